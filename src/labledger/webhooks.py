"""Receiving forge deliveries: the one path shared by the HTTP route and `labledger ingest`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from labledger.core.errors import BodyTooLarge
from labledger.core.model import Outcome
from labledger.core.ports import LedgerStore
from labledger.core.service import record_push_delivery
from labledger.forges import github
from labledger.forges.github_scope import ScopedSecret, signing_secret


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    status: int
    outcome: str  # recorded | duplicate | ping | ignored
    body: dict[str, object] = field(default_factory=dict)


def receive_github(
    store: LedgerStore,
    secrets: bytes | Sequence[ScopedSecret],
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
        secrets = (ScopedSecret(secrets),) if secrets else ()
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
        },
    )
