"""Gitea and Forgejo webhooks: signature, headers and push payloads -> core values.

No network code. Forgejo sends the same payload under both header families (`X-Forgejo-*`
and `X-Gitea-*`); one route and the forge value `gitea` serve both. Sources: docs/forges.md.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from pydantic import Field, ValidationError

from labledger.core.errors import MalformedPayload, NotJson, SignatureRejected
from labledger.core.model import (
    Account,
    ChangedFiles,
    Commit,
    Delivery,
    Identity,
    Push,
    is_zero_sha,
)
from labledger.forges.github import MAX_DELIVERY_ID_LENGTH, RepoId, Sha, Text
from labledger.forges.github import _describe as describe_errors
from labledger.forges.github import _is_header_token as is_header_token
from labledger.forges.github import _Payload as Payload
from labledger.forges.scoped import ScopedSecret, parse_scoped_secrets

FORGE = "gitea"
SETTING = "LABLEDGER_GITEA_WEBHOOK_SECRET"
SCOPE_KINDS = {"owner": r"[1-9][0-9]{0,18}", "repo": r"[1-9][0-9]{0,18}"}


def parse_secrets(text: str | None) -> tuple[ScopedSecret, ...]:
    return parse_scoped_secrets(text or "", SETTING, SCOPE_KINDS)


@dataclass(frozen=True, slots=True)
class Grant:
    """The configured secrets whose HMAC matched, all of one instance."""

    forge: str
    matched: tuple[ScopedSecret, ...]

    def check_scope(self, push: Push, owner_id: int) -> None:
        scopes = {"repo": {str(push.repository_id)}, "owner": {str(owner_id)}}
        if not any(entry.covers(scopes) for entry in self.matched):
            raise SignatureRejected(
                f"the secret that signed this delivery does not cover repository "
                f"{push.repository_id}; scope it to the repository or its owner"
            )


def _signature(headers: Mapping[str, str]) -> tuple[str, str]:
    """The first signature header present, with its name: Forgejo's, Gitea's, then GitHub's."""
    for name in ("x-forgejo-signature", "x-gitea-signature"):
        if headers.get(name):
            return name, headers[name].strip()
    hub = headers.get("x-hub-signature-256", "").strip()
    if hub:
        return "x-hub-signature-256", hub.removeprefix("sha256=")
    return "", ""


def authenticate(
    secrets: tuple[ScopedSecret, ...], headers: Mapping[str, str], body: bytes
) -> Grant:
    """Check the hex HMAC-SHA256 of the raw body against every configured secret; fail closed."""
    if not secrets:
        raise SignatureRejected(f"no Gitea webhook secret is configured ({SETTING})")
    name, given_hex = _signature(headers)
    if not name:
        raise SignatureRejected("missing X-Gitea-Signature / X-Forgejo-Signature header")
    try:
        given = bytes.fromhex(given_hex)
    except ValueError:
        raise SignatureRejected(f"{name} is not hexadecimal") from None
    # Every secret is tried (each in constant time), so timing does not say which one matched.
    matched = [
        e
        for e in secrets
        if hmac.compare_digest(hmac.new(e.secret.encode(), body, hashlib.sha256).digest(), given)
    ]
    if not matched:
        raise SignatureRejected(f"{name} does not match the body and a configured secret")
    if len({e.instance for e in matched}) > 1:
        raise SignatureRejected("the signature matches two instances; make their secrets distinct")
    instance = matched[0].instance
    return Grant(FORGE if instance is None else f"{FORGE}:{instance}", tuple(matched))


@dataclass(frozen=True, slots=True)
class Envelope:
    event: str
    delivery_id: str


def _one_of(headers: Mapping[str, str], suffix: str) -> str:
    """`X-Forgejo-<suffix>` and `X-Gitea-<suffix>`: both name one value when both are sent."""
    values = {headers.get(f"x-{f}-{suffix}", "").strip() for f in ("forgejo", "gitea")} - {""}
    if len(values) > 1:
        raise MalformedPayload(f"X-Forgejo-{suffix} and X-Gitea-{suffix} differ")
    return values.pop() if values else ""


def read_envelope(headers: Mapping[str, str]) -> Envelope:
    content_type = headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise NotJson(content_type or None)
    event = _one_of(headers, "event")
    if not event:
        raise MalformedPayload("missing X-Gitea-Event / X-Forgejo-Event header")
    delivery_id = _one_of(headers, "delivery")
    if not delivery_id:
        raise MalformedPayload("missing X-Gitea-Delivery / X-Forgejo-Delivery header")
    if not is_header_token(delivery_id, MAX_DELIVERY_ID_LENGTH):
        raise MalformedPayload("X-Gitea-Delivery must be at most 100 printable ASCII characters")
    return Envelope(event, delivery_id)


def make_delivery(grant: Grant, envelope: Envelope, body: bytes, at: datetime) -> Delivery:
    digest = hashlib.sha256(body).digest()
    return Delivery(grant.forge, envelope.delivery_id, None, envelope.event, body, digest, at)


class _Person(Payload):
    name: Text | None = None
    email: Text | None = None
    username: Text | None = None


class _Commit(Payload):
    id: Sha
    message: Text = ""
    timestamp: Text | None = None
    # Go marshals a nil pointer or slice as null: every one of these may be null.
    author: _Person | None = None
    committer: _Person | None = None
    added: list[Text] | None = None
    modified: list[Text] | None = None
    removed: list[Text] | None = None


class _User(Payload):
    id: RepoId
    login: Text
    full_name: Text | None = None
    email: Text | None = None


class _Repository(Payload):
    id: RepoId
    full_name: Annotated[Text, Field(max_length=1024)]
    owner: _User


class _PushPayload(Payload):
    ref: Annotated[Text, Field(pattern=r"^refs/", max_length=4096)]
    before: Sha
    after: Sha
    created: bool | None = None
    deleted: bool | None = None
    forced: bool | None = None
    commits: list[_Commit] | None = None
    total_commits: Annotated[int, Field(ge=0, lt=2**31)] | None = None
    head_commit: _Commit | None = None
    repository: _Repository
    pusher: _User
    sender: _User


@dataclass(frozen=True, slots=True)
class ParsedPush:
    push: Push
    owner_id: int  # the repository owner's numeric id, for `owner:ID` scopes


def parse_gitea_push(body: bytes) -> ParsedPush:
    """Parse a push event body, or raise MalformedPayload saying what is wrong."""
    try:
        p = _PushPayload.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedPayload(describe_errors(exc)) from None
    commits = tuple(_commit(c) for c in p.commits or ())
    if p.total_commits is not None and p.total_commits < len(commits):
        raise MalformedPayload("smaller than the commits listed", "total_commits")
    push = Push(
        repository_id=p.repository.id,
        repository_full_name=p.repository.full_name,
        ref=p.ref,
        before=p.before,
        after=p.after,
        # Gitea and Forgejo send no flags: zeros before/after mark creation and deletion.
        created=p.created if p.created is not None else is_zero_sha(p.before),
        deleted=p.deleted if p.deleted is not None else is_zero_sha(p.after),
        forced=bool(p.forced),
        pusher=Identity(p.pusher.full_name or None, p.pusher.email or None, p.pusher.login),
        sender=Account(p.sender.login, p.sender.id),
        pushed_at=None,  # no push time in the payload: first receipt is the trusted time
        commits=commits,
        head_commit=_commit(p.head_commit) if p.head_commit else None,
        total_commits=p.total_commits,
    )
    return ParsedPush(push, p.repository.owner.id)


def _identity(person: _Person | None) -> Identity:
    if person is None:
        return Identity(None, None)
    return Identity(person.name, person.email, person.username or None)


def _commit(c: _Commit) -> Commit:
    files = ChangedFiles(tuple(c.added or ()), tuple(c.modified or ()), tuple(c.removed or ()))
    author, committer = _identity(c.author), _identity(c.committer)
    return Commit(c.id, None, c.message, author, committer, c.timestamp, True, files)
