"""GitLab webhooks: token, Standard Webhooks signature and push payloads -> core values.

No network code. Sources for every header and field: docs/forges.md.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, ValidationError
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError

from labledger.core.errors import MalformedPayload, NotJson, SignatureRejected
from labledger.core.model import ZERO_SHA, Account, ChangedFiles, Commit, Delivery, Identity, Push
from labledger.forges.github import MAX_DELIVERY_ID_LENGTH, RepoId, Sha, Text
from labledger.forges.github import _describe as describe_errors
from labledger.forges.github import _is_header_token as is_header_token
from labledger.forges.github import _Payload as Payload
from labledger.forges.scoped import ScopedSecret, matching, parse_scoped_secrets

FORGE = "gitlab"
PUSH_EVENTS = {"Push Hook": "push", "Tag Push Hook": "tag_push"}
# `group:PATH` matches a project under that group path (push payloads carry no group id).
SCOPE_KINDS = {"project": r"[1-9][0-9]{0,18}", "group": r"[A-Za-z0-9_.][A-Za-z0-9_./-]{0,254}"}
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^v1,[A-Za-z0-9+/]+={0,2}( v1,[A-Za-z0-9+/]+={0,2})*$")


@dataclass(frozen=True, slots=True)
class Credentials:
    """`LABLEDGER_GITLAB_WEBHOOK_TOKEN` and `LABLEDGER_GITLAB_SIGNING_TOKEN`, parsed."""

    tokens: tuple[ScopedSecret, ...] = ()
    signing: tuple[ScopedSecret, ...] = ()

    @classmethod
    def parse(cls, tokens: str | None, signing: str | None) -> Credentials:
        found = cls(
            parse_scoped_secrets(tokens or "", "LABLEDGER_GITLAB_WEBHOOK_TOKEN", SCOPE_KINDS),
            parse_scoped_secrets(signing or "", "LABLEDGER_GITLAB_SIGNING_TOKEN", SCOPE_KINDS),
        )
        for entry in found.signing:
            _signer(entry, "LABLEDGER_GITLAB_SIGNING_TOKEN")
        return found


@dataclass(frozen=True, slots=True)
class Grant:
    """What authenticated a delivery: its instance and the entries that matched, per kind."""

    forge: str
    signed_id: str | None  # `webhook-id`, covered by the signature
    matched: tuple[tuple[ScopedSecret, ...], ...]  # one group per credential kind required

    def check_scope(self, push: Push) -> None:
        """Every credential the instance requires must cover the pushed project."""
        scopes = {"project": {str(push.repository_id)}, "group": _groups(push)}
        for group in self.matched:
            if not any(entry.covers(scopes) for entry in group):
                raise SignatureRejected(
                    f"the GitLab credential that authenticated this delivery does not cover "
                    f"project {push.repository_id}; scope it to the project or its group"
                )


def authenticate(creds: Credentials, headers: Mapping[str, str], body: bytes) -> Grant:
    """Check `X-Gitlab-Token` and, where configured, `webhook-signature`; fail closed."""
    if not creds.tokens and not creds.signing:
        raise SignatureRejected("no GitLab webhook token is configured; every request is refused")
    tokens = matching(creds.tokens, headers.get("x-gitlab-token"))
    signed = _verified_signers(creds.signing, headers, body)
    granted = [
        grant
        for instance in {e.instance for e in (*creds.tokens, *creds.signing)}
        if (grant := _grant(creds, instance, tokens, signed)) is not None
    ]
    if len(granted) != 1:
        raise SignatureRejected(_refusal(headers, tokens, signed, len(granted)))
    signed_id = headers.get("webhook-id") if signed else None
    return Grant(granted[0].forge, signed_id, granted[0].matched)


def _grant(
    creds: Credentials,
    instance: str | None,
    tokens: list[ScopedSecret],
    signed: list[ScopedSecret],
) -> Grant | None:
    """The instance's grant when every kind of credential it has configured matched."""
    required = [
        [e for e in found if e.instance == instance]
        for configured, found in ((creds.tokens, tokens), (creds.signing, signed))
        if any(e.instance == instance for e in configured)
    ]
    if not all(required):
        return None
    forge = FORGE if instance is None else f"{FORGE}:{instance}"
    return Grant(forge, None, tuple(tuple(group) for group in required))


def _refusal(
    headers: Mapping[str, str], tokens: list[ScopedSecret], signed: list[ScopedSecret], n: int
) -> str:
    if n > 1:
        return "the credentials match more than one GitLab instance; configure distinct tokens"
    if not headers.get("x-gitlab-token") and not headers.get("webhook-signature"):
        return "missing X-Gitlab-Token header"
    if tokens and not signed:
        return "this hook's instance requires a webhook-signature (LABLEDGER_GITLAB_SIGNING_TOKEN)"
    if signed and not tokens:
        return "this hook's instance requires X-Gitlab-Token (LABLEDGER_GITLAB_WEBHOOK_TOKEN)"
    return "X-Gitlab-Token or webhook-signature does not match a configured GitLab credential"


def _signer(entry: ScopedSecret, setting: str) -> Webhook:
    if not entry.secret.startswith("whsec_"):
        raise ValueError(f"{setting}: a signing token is whsec_ followed by base64")
    try:
        return Webhook(entry.secret)
    except (binascii.Error, EmptyWebhookSecretError):
        raise ValueError(f"{setting}: a signing token is whsec_ followed by base64") from None


def _verified_signers(
    signing: tuple[ScopedSecret, ...], headers: Mapping[str, str], body: bytes
) -> list[ScopedSecret]:
    """The signing entries whose key made `webhook-signature` within the replay tolerance."""
    signature = headers.get("webhook-signature", "")
    if not signing or not signature:
        return []
    timestamp, msg_id = headers.get("webhook-timestamp", ""), headers.get("webhook-id", "")
    # The library raises a bare ValueError or UnicodeDecodeError on odd input: refuse it first.
    if not _TIMESTAMP.match(timestamp) or not _SIGNATURE.match(signature):
        raise SignatureRejected("webhook-timestamp or webhook-signature is malformed")
    if not is_header_token(msg_id, MAX_DELIVERY_ID_LENGTH) or not msg_id:
        raise SignatureRejected("webhook-id must be 1-100 printable ASCII characters")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureRejected("the signed body is not UTF-8") from None
    sent = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
    found = []
    for entry in signing:
        try:
            _signer(entry, "LABLEDGER_GITLAB_SIGNING_TOKEN").verify(body, sent, json_parse=False)
        except WebhookVerificationError as exc:
            if "timestamp" in str(exc):
                raise SignatureRejected(
                    "webhook-timestamp is outside the 5-minute tolerance: a replayed or "
                    "delayed delivery; resend it from the hook's Recent events"
                ) from None
            continue
        found.append(entry)
    return found


@dataclass(frozen=True, slots=True)
class Envelope:
    event: str  # the X-Gitlab-Event header
    object_kind: str | None  # push or tag_push for the events recorded
    delivery_id: str


def read_envelope(headers: Mapping[str, str], body: bytes, grant: Grant) -> Envelope:
    """The event and its identity: the signed `webhook-id`, `Idempotency-Key`, or the body."""
    content_type = headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise NotJson(content_type or None)
    event = headers.get("x-gitlab-event", "").strip()
    if not event:
        raise MalformedPayload("missing X-Gitlab-Event header")
    key = headers.get("idempotency-key", "").strip()
    if key and not is_header_token(key, MAX_DELIVERY_ID_LENGTH):
        raise MalformedPayload("Idempotency-Key must be at most 100 printable ASCII characters")
    if grant.signed_id is not None and key and key != grant.signed_id:
        raise MalformedPayload("Idempotency-Key differs from the signed webhook-id")
    # A retry resends the same body; without a key (GitLab before 17.4) the body names the event.
    delivery_id = grant.signed_id or key or "sha256:" + hashlib.sha256(body).hexdigest()
    return Envelope(event, PUSH_EVENTS.get(event), delivery_id)


def make_delivery(grant: Grant, envelope: Envelope, body: bytes, at: datetime) -> Delivery:
    digest = hashlib.sha256(body).digest()
    return Delivery(grant.forge, envelope.delivery_id, None, envelope.event, body, digest, at)


class _Person(Payload):
    name: Text | None = None
    email: Text | None = None


class _Commit(Payload):
    id: Sha
    message: Text = ""
    timestamp: Text | None = None
    author: _Person = _Person()
    added: list[Text] | None = None
    modified: list[Text] | None = None
    removed: list[Text] | None = None


class _Project(Payload):
    id: RepoId
    path_with_namespace: Annotated[Text, Field(max_length=1024)]


class _PushPayload(Payload):
    object_kind: Literal["push", "tag_push"]
    ref: Annotated[Text, Field(pattern=r"^refs/", max_length=4096)]
    before: Sha
    after: Sha
    checkout_sha: Sha | None = None
    user_id: RepoId
    user_name: Text | None = None
    user_username: Text | None = None
    user_email: Text | None = None
    project: _Project
    commits: list[_Commit] | None = None
    total_commits_count: Annotated[int, Field(ge=0, lt=2**31)] | None = None


def parse_gitlab_push(body: bytes, object_kind: str) -> Push:
    """Parse a Push Hook or Tag Push Hook body, or raise MalformedPayload saying what is wrong."""
    try:
        p = _PushPayload.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedPayload(describe_errors(exc)) from None
    if p.object_kind != object_kind:
        raise MalformedPayload(f"{p.object_kind!r} does not match X-Gitlab-Event", "object_kind")
    commits = tuple(_commit(c) for c in p.commits or ())
    if p.total_commits_count is not None and p.total_commits_count < len(commits):
        raise MalformedPayload("smaller than the commits listed", "total_commits_count")
    return Push(
        repository_id=p.project.id,
        repository_full_name=p.project.path_with_namespace,
        ref=p.ref,
        before=p.before,
        after=p.after,
        created=p.before == ZERO_SHA,
        deleted=p.after == ZERO_SHA,
        forced=False,  # GitLab does not say; the push chain check shows a rewrite (docs/forges.md)
        pusher=Identity(p.user_name, p.user_email, p.user_username),
        sender=Account(p.user_username or p.user_name or str(p.user_id), p.user_id),
        pushed_at=None,  # no push time in the payload: first receipt is the trusted time
        commits=commits,
        head_commit=_head(p.checkout_sha, commits),
        total_commits=p.total_commits_count,
    )


def _head(checkout_sha: str | None, commits: tuple[Commit, ...]) -> Commit | None:
    """The commit the ref now points at; only its SHA is known when it is not listed."""
    if checkout_sha is None:
        return None
    listed = next((c for c in commits if c.sha == checkout_sha), None)
    if listed is not None:
        return listed
    nobody = Identity(None, None)
    return Commit(checkout_sha, None, "", nobody, nobody, None, True)


def _commit(c: _Commit) -> Commit:
    files = ChangedFiles(tuple(c.added or ()), tuple(c.modified or ()), tuple(c.removed or ()))
    author = Identity(c.author.name, c.author.email)
    # GitLab lists no committer: it stays unknown rather than copied from the author.
    return Commit(c.id, None, c.message, author, Identity(None, None), c.timestamp, True, files)


def _groups(push: Push) -> set[str]:
    """Every group path above the project: `a/b/c` is under `a` and `a/b`."""
    parts = push.repository_full_name.split("/")[:-1]
    return {"/".join(parts[: i + 1]) for i in range(len(parts))}
