"""Receiving forge deliveries: the one path shared by the HTTP route and `labledger ingest`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from labledger.config import Settings
from labledger.core.errors import BodyTooLarge
from labledger.core.model import Outcome, RecordResult
from labledger.core.ports import LedgerStore
from labledger.core.service import record_push_delivery
from labledger.forges import gitea, github, gitlab
from labledger.forges.github_scope import ScopedSecret as GithubSecret
from labledger.forges.github_scope import signing_secret
from labledger.forges.scoped import ScopedSecret


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    status: int
    outcome: str  # recorded | duplicate | ping | ignored
    body: dict[str, object] = field(default_factory=dict)


def receive_github(
    store: LedgerStore,
    secrets: bytes | Sequence[GithubSecret],
    headers: Mapping[str, str],
    body: bytes,
    received_at: datetime,
    max_body_bytes: int,
) -> WebhookAnswer:
    """Authenticate first, then parse, then record. `headers` keys must be lower case.

    `secrets`: the configured webhook secrets, or one unscoped secret as bytes. Raises the core
    errors (signature, malformed, conflict, too large, not JSON); the edges translate them into
    answers.
    """
    if len(body) > max_body_bytes:
        raise BodyTooLarge(max_body_bytes)
    if isinstance(secrets, bytes):
        secrets = (GithubSecret(secrets),) if secrets else ()
    signed_by = signing_secret(secrets, body, headers.get(github.SIGNATURE_HEADER))
    envelope = github.read_envelope(headers)
    if envelope.event == "ping":
        return WebhookAnswer(200, "ping", {"outcome": "ping", "delivery_id": envelope.delivery_id})
    if envelope.event != "push":
        return WebhookAnswer(
            200,
            "ignored",
            {"outcome": "ignored", "event": envelope.event, "delivery_id": envelope.delivery_id},
        )
    push = github.parse_github_push(body, signed_by)
    result = record_push_delivery(store, github.make_delivery(envelope, body, received_at), push)
    return WebhookAnswer(
        202 if result.outcome is Outcome.RECORDED else 200,
        result.outcome.value,
        {
            "outcome": result.outcome.value,
            "delivery_id": result.delivery_id,
            "push_id": result.push_id,
            "attempt_ids": list(result.attempt_ids),
            **({"reason": result.no_attempt_reason} if result.no_attempt_reason else {}),
        },
    )


def recorded_answer(result: RecordResult) -> WebhookAnswer:
    """202 for a new push delivery, 200 for a duplicate: the same body for every forge."""
    return WebhookAnswer(
        202 if result.outcome is Outcome.RECORDED else 200,
        result.outcome.value,
        {
            "outcome": result.outcome.value,
            "delivery_id": result.delivery_id,
            "push_id": result.push_id,
            "attempt_ids": list(result.attempt_ids),
        },
    )


def _ignored(event: str, delivery_id: str) -> WebhookAnswer:
    return WebhookAnswer(
        200, "ignored", {"outcome": "ignored", "event": event, "delivery_id": delivery_id}
    )


def receive_gitlab(
    store: LedgerStore,
    creds: gitlab.Credentials,
    headers: Mapping[str, str],
    body: bytes,
    received_at: datetime,
    max_body_bytes: int,
) -> WebhookAnswer:
    """GitLab's Push Hook and Tag Push Hook; authenticated before anything is parsed."""
    if len(body) > max_body_bytes:
        raise BodyTooLarge(max_body_bytes)
    grant = gitlab.authenticate(creds, headers, body)
    envelope = gitlab.read_envelope(headers, body, grant)
    if envelope.object_kind is None:
        return _ignored(envelope.event, envelope.delivery_id)
    push = gitlab.parse_gitlab_push(body, envelope.object_kind)
    grant.check_scope(push)
    delivery = gitlab.make_delivery(grant, envelope, body, received_at)
    return recorded_answer(record_push_delivery(store, delivery, push))


def receive_gitea(
    store: LedgerStore,
    secrets: tuple[ScopedSecret, ...],
    headers: Mapping[str, str],
    body: bytes,
    received_at: datetime,
    max_body_bytes: int,
) -> WebhookAnswer:
    """Gitea's and Forgejo's push events; authenticated before anything is parsed."""
    if len(body) > max_body_bytes:
        raise BodyTooLarge(max_body_bytes)
    grant = gitea.authenticate(secrets, headers, body)
    envelope = gitea.read_envelope(headers)
    if envelope.event != "push":
        return _ignored(envelope.event, envelope.delivery_id)
    parsed = gitea.parse_gitea_push(body)
    grant.check_scope(parsed.push, parsed.owner_id)
    delivery = gitea.make_delivery(grant, envelope, body, received_at)
    return recorded_answer(record_push_delivery(store, delivery, parsed.push))


def receive_saved(
    store: LedgerStore,
    settings: Settings,
    headers: Mapping[str, str],
    body: bytes,
    received_at: datetime,
) -> WebhookAnswer:
    """A saved delivery of any forge, told apart by its event header (`labledger ingest`).

    Gitea also sends `X-GitHub-Event`, so its own headers are looked at first. The headers
    only choose which forge's credentials must authenticate the body, so lying gains nothing.
    """
    limit = settings.max_body_bytes
    if "x-gitea-event" in headers or "x-forgejo-event" in headers:
        return receive_gitea(store, settings.gitea_secrets(), headers, body, received_at, limit)
    if "x-gitlab-event" in headers:
        creds = settings.gitlab_credentials()
        return receive_gitlab(store, creds, headers, body, received_at, limit)
    return receive_github(store, settings.github_secrets(), headers, body, received_at, limit)
