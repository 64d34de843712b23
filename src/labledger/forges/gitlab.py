"""GitLab webhooks: token, Standard Webhooks signature and push payloads -> core values.

No network code. Sources for every header and field: docs/forges.md.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, ValidationError

from labledger.core.errors import MalformedPayload, NotJson
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
from labledger.forges.gitlab_auth import FORGE, Credentials, Grant, authenticate

# One module for the receiver to import: credentials (gitlab_auth) and payloads (here).
__all__ = [
    "FORGE",
    "PUSH_EVENTS",
    "Credentials",
    "Envelope",
    "Grant",
    "authenticate",
    "make_delivery",
    "parse_gitlab_push",
    "read_envelope",
]

PUSH_EVENTS = {"Push Hook": "push", "Tag Push Hook": "tag_push"}


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
        created=is_zero_sha(p.before),
        deleted=is_zero_sha(p.after),
        forced=False,  # GitLab does not say; the push chain check shows a rewrite (docs/forges.md)
        pusher=Identity(p.user_name, p.user_email, p.user_username),
        sender=Account(p.user_username or p.user_name or str(p.user_id), p.user_id),
        pushed_at=None,  # no push time in the payload: first receipt is the trusted time
        commits=commits,
        head_commit=_head(p.checkout_sha, commits),
        total_commits=p.total_commits_count,
    )


def parse_recorded_gitlab_push(body: bytes) -> Push:
    """A recorded body read again (a session picking up earlier pushes): its own object_kind."""
    try:
        kind = _PushPayload.model_validate_json(body).object_kind
    except ValidationError as exc:
        raise MalformedPayload(describe_errors(exc)) from None
    return parse_gitlab_push(body, kind)


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
