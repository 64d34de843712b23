"""GitHub webhooks: signature, headers and push payloads -> core values. No network code."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from labledger.core.errors import MalformedPayload, NotJson
from labledger.core.model import (
    API_DELIVERY_PREFIX,
    Account,
    ChangedFiles,
    Commit,
    Delivery,
    Identity,
    Push,
)
from labledger.forges.github_scope import ScopedSecret, check_scope, signing_secret

FORGE = "github"
SIGNATURE_HEADER = "x-hub-signature-256"
MAX_DELIVERY_ID_LENGTH = 100
MAX_HOOK_ID_LENGTH = 40  # GitHub's hook ids are numbers; the column is VARCHAR(40).
# What a push recorded from GitHub's API carries (forges/github_activity.py): its delivery id
# and its kept body begin so. A webhook may carry neither, so a webhook cannot pass for one.
API_EVIDENCE_PREFIX = b'{"labledger_evidence"'


def verify_signature(secret: bytes, body: bytes, header: str | None) -> None:
    """Check `X-Hub-Signature-256: sha256=<hex>` over the raw body with one unscoped secret."""
    signing_secret((ScopedSecret(secret),) if secret else (), body, header)


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the request headers say about the event."""

    event: str
    delivery_id: str
    hook_id: str | None


def read_envelope(headers: Mapping[str, str]) -> Envelope:
    """Read the event headers of an authenticated request; `headers` keys are lower case."""
    content_type = headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise NotJson(content_type or None)
    event = headers.get("x-github-event", "").strip()
    if not event:
        raise MalformedPayload("missing X-GitHub-Event header")
    delivery_id = headers.get("x-github-delivery", "").strip()
    if not delivery_id:
        raise MalformedPayload("missing X-GitHub-Delivery header")
    if not _is_header_token(delivery_id, MAX_DELIVERY_ID_LENGTH):
        raise MalformedPayload("X-GitHub-Delivery must be at most 100 printable ASCII characters")
    if delivery_id.startswith(API_DELIVERY_PREFIX):
        raise MalformedPayload(f"X-GitHub-Delivery must not begin with {API_DELIVERY_PREFIX}")
    hook_id = headers.get("x-github-hook-id", "").strip() or None
    if hook_id is not None and not _is_header_token(hook_id, MAX_HOOK_ID_LENGTH):
        raise MalformedPayload("X-GitHub-Hook-ID must be at most 40 printable ASCII characters")
    return Envelope(event=event, delivery_id=delivery_id, hook_id=hook_id)


def _is_header_token(value: str, max_length: int) -> bool:
    # Headers are not covered by the signature, and `labledger ingest` reads them from files:
    # a NUL or an over-long id must be a 400 here, not a database error (PostgreSQL refuses
    # NUL in text and enforces VARCHAR lengths; SQLite would silently store either).
    return len(value) <= max_length and value.isascii() and value.isprintable()


def make_delivery(envelope: Envelope, body: bytes, received_at: datetime) -> Delivery:
    return Delivery(
        forge=FORGE,
        delivery_id=envelope.delivery_id,
        hook_id=envelope.hook_id,
        event=envelope.event,
        body=body,
        body_sha256=hashlib.sha256(body).digest(),
        received_at=received_at,
    )


def _storable_text(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded as UTF-8.
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    if value.isascii():  # a flag CPython keeps on every string: most payload text ends here
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid Unicode (lone surrogate)") from None
    return value


Text = Annotated[str, AfterValidator(_storable_text)]
Sha = Annotated[str, Field(pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$")]
RepoId = Annotated[int, Field(gt=0, lt=2**63)]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class _Person(_Payload):
    name: Text | None = None
    email: Text | None = None
    username: Text | None = None


class _Commit(_Payload):
    id: Sha
    tree_id: Sha | None = None
    distinct: bool = True
    message: Text = ""
    timestamp: Text | None = None
    author: _Person = _Person()
    committer: _Person = _Person()
    added: list[Text] = []
    removed: list[Text] = []
    modified: list[Text] = []


class _Owner(_Payload):
    id: RepoId | None = None


class _Installation(_Payload):
    id: RepoId


class _Repository(_Payload):
    id: RepoId
    full_name: Text
    pushed_at: int | Text | None = None
    owner: _Owner = _Owner()


class _Sender(_Payload):
    login: Text
    id: RepoId


class _PushPayload(_Payload):
    ref: Annotated[Text, Field(pattern=r"^refs/", max_length=4096)]
    before: Sha
    after: Sha
    created: bool = False
    deleted: bool = False
    forced: bool = False
    # GitHub lists at most this many (forge-facts.md): more is not a GitHub push, and would
    # hold the write lock for one enormous transaction.
    commits: Annotated[list[_Commit], Field(max_length=Push.MAX_LISTED_COMMITS)] = []
    head_commit: _Commit | None = None
    repository: _Repository
    pusher: _Person
    sender: _Sender
    installation: _Installation | None = None


def parse_github_push(body: bytes, signed_by: ScopedSecret | None = None) -> Push:
    """Parse a push event body into a core Push, or raise MalformedPayload saying what is wrong.

    `signed_by`: the secret that signed the body; a push outside its scope is refused
    (SignatureRejected) before anything is made of it.
    """
    if body.startswith(API_EVIDENCE_PREFIX):
        raise MalformedPayload("labledger_evidence is reserved for pushes read from GitHub's API")
    try:
        payload = _PushPayload.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedPayload(_describe(exc)) from None
    if signed_by is not None:
        installation = payload.installation.id if payload.installation else None
        check_scope(signed_by, payload.repository.owner.id, installation)
    return Push(
        repository_id=payload.repository.id,
        repository_full_name=payload.repository.full_name,
        ref=payload.ref,
        before=payload.before,
        after=payload.after,
        created=payload.created,
        deleted=payload.deleted,
        forced=payload.forced,
        pusher=Identity(payload.pusher.name, payload.pusher.email, payload.pusher.username),
        sender=Account(payload.sender.login, payload.sender.id),
        pushed_at=_pushed_at(payload.repository.pushed_at),
        commits=tuple(_commit(c) for c in payload.commits),
        head_commit=_commit(payload.head_commit) if payload.head_commit else None,
    )


# datetime's range: year 1..9999. A forge clock outside 1970..9999 is not a push time.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_EPOCH = int(datetime(9999, 12, 31, tzinfo=UTC).timestamp())


def _pushed_at(value: int | str | None) -> datetime | None:
    """`repository.pushed_at` is an integer epoch in push events, an ISO string elsewhere."""
    if value is None:
        return None
    shown = repr(value) if len(str(value)) <= 40 else f"{str(value)[:40]}..."
    implausible = MalformedPayload(
        f"{shown} is out of range: not a plausible push time (1970..9999 UTC)",
        "repository.pushed_at",
    )
    if isinstance(value, int):
        if not 0 <= value <= _MAX_EPOCH:
            raise implausible
        return datetime.fromtimestamp(value, UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedPayload(f"{shown} is not a timestamp", "repository.pushed_at") from None
    if moment.tzinfo is None:
        raise MalformedPayload("timestamp lacks a time zone", "repository.pushed_at")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before datetime's year 1 in UTC
        raise implausible from None
    # One rule for both forms: a forge clock before 1970 is as implausible as a negative epoch.
    if moment < _EPOCH:
        raise implausible
    return moment


def _identity(person: _Person) -> Identity:
    return Identity(person.name, person.email, person.username)


def _commit(c: _Commit) -> Commit:
    return Commit(
        sha=c.id,
        tree_sha=c.tree_id,
        message=c.message,
        author=_identity(c.author),
        committer=_identity(c.committer),
        timestamp=c.timestamp,
        distinct=c.distinct,
        files=ChangedFiles(tuple(c.added), tuple(c.modified), tuple(c.removed)),
    )


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False, include_input=False)[:3]:
        location = ".".join(str(part) for part in error["loc"])
        if error["type"] == "too_long" and location == "commits":
            error["msg"] = (
                f"more than {Push.MAX_LISTED_COMMITS} commits, GitHub's limit for one push"
            )
        problems.append(f"{location}: {error['msg']}" if location else error["msg"])
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")
