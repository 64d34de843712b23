"""The JSON shapes of the API (they make the OpenAPI schema) and their builders."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import Path, Query, Response
from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError, to_json

from labledger.core.errors import MalformedPayload
from labledger.core.model import (
    CLOCK_SKEW,
    AttemptRecord,
    Identity,
    LabAttempt,
    LabSession,
    PickedUp,
    PushRecord,
    SessionSpec,
    StoredDelivery,
    is_time_unconfirmed,
    recorded_from,
)
from labledger.core.text import check_text
from labledger.forges.scoped import FORGE_PATTERN
from labledger.storage.rows import AttemptRow, DeliveryView

RecordedFrom = Annotated[
    Literal["webhook", "github-api"],
    Field(
        description="How the push reached the ledger: a forge's webhook, or read from GitHub's "
        "API by `labledger reconcile --activity` (its time is GitHub's activity timestamp)"
    ),
]

# The validation error type that answers 400 `malformed` rather than 422 `invalid`.
CONTROL_CHARACTER = "control_character"


def _no_controls(value: str, layout: bool = False) -> str:
    try:
        check_text("the value", value, layout=layout)
    except MalformedPayload as exc:
        raise PydanticCustomError(CONTROL_CHARACTER, str(exc)) from None
    return value


def _ascii(pattern: str, spelled: str) -> BeforeValidator:
    """Python's int() and pydantic take `²`, `1_000` or ` 12`; a cursor or count in a URL is
    plain ASCII digits, so one value has one spelling and nothing odd reaches the driver."""

    def check(value: object) -> object:
        if isinstance(value, str) and not re.fullmatch(pattern, value):
            raise PydanticCustomError("ascii_digits", "use " + spelled)
        return value

    return BeforeValidator(check)


# Path and query text: no control characters (PostgreSQL cannot even compare with NUL).
PlainText = Annotated[str, AfterValidator(_no_controls)]
# Free text (a reason): TAB, LF and CR allowed, no other control character.
Prose = Annotated[str, AfterValidator(lambda v: _no_controls(v, layout=True))]
Digits = _ascii(r"[0-9]{1,19}", "ASCII digits 0-9 only")
DecimalDigits = _ascii(r"[0-9]{1,9}(\.[0-9]{1,9})?", "ASCII digits, with at most one `.`")
# Ledger ids are 64-bit: a larger id in a path is refused (422) before it reaches the driver.
RowId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a ledger id"), Digits]
Limit = Annotated[int, Query(ge=1, le=500), Digits]


class SessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lab_id: str = Field(min_length=1, max_length=200)
    subject_id: str = Field(min_length=1, max_length=200)
    forge: str = Field(
        default="github",
        pattern=FORGE_PATTERN,
        description="github, gitlab or gitea (Forgejo too); FORGE:INSTANCE for a named instance",
    )
    repository_id: int = Field(gt=0, lt=2**63, description="The forge's numeric repository id")
    repository_full_name: str | None = Field(default=None, max_length=300)
    branch_glob: str = Field(default="*", min_length=1, max_length=300)
    opens_at: AwareDatetime
    due_at: AwareDatetime | None = None
    closes_at: AwareDatetime | None = None

    def to_spec(self) -> SessionSpec:
        return SessionSpec(**self.model_dump(include=set(SessionIn.model_fields)))


class SessionCreate(SessionIn):
    allow_shared_repository: bool = Field(
        default=False,
        description="Another session of this lab on this repository is refused (409) "
        "unless this is true: a pushed commit would count for both sessions",
    )


class SessionOut(SessionIn):
    id: int
    created_at: datetime
    original_due_at: datetime | None = Field(
        default=None, description="due_at as created; due_at is the effective (extended) one"
    )
    original_closes_at: datetime | None = None
    deadline_changes: int = Field(default=0, description="How many deadline changes apply")
    picked_up_attempts: int | None = Field(
        default=None,
        description="On creation or a deadline change: attempts derived from pushes "
        "recorded before (invariant 11)",
    )

    @classmethod
    def of(cls, s: LabSession) -> SessionOut:
        spec = s.spec
        return cls(
            id=s.id,
            created_at=s.created_at,
            original_due_at=s.original_due_at,
            original_closes_at=s.original_closes_at,
            deadline_changes=s.deadline_changes,
            lab_id=spec.lab_id,
            subject_id=spec.subject_id,
            forge=spec.forge,
            repository_id=spec.repository_id,
            repository_full_name=spec.repository_full_name,
            branch_glob=spec.branch_glob,
            opens_at=spec.opens_at,
            due_at=spec.due_at,
            closes_at=spec.closes_at,
        )

    @classmethod
    def picked_up(cls, p: PickedUp) -> SessionOut:
        return cls.of(p.session).model_copy(update={"picked_up_attempts": len(p.attempt_ids)})


class SessionPage(BaseModel):
    items: list[SessionOut]
    next_cursor: str | None


class PersonOut(BaseModel):
    name: str | None
    email: str | None
    username: str | None = None

    @classmethod
    def of(cls, p: Identity) -> PersonOut:
        return cls(name=p.name, email=p.email, username=p.username)


class AccountOut(BaseModel):
    login: str
    id: int


class ChangedFilesOut(BaseModel):
    added: list[str]
    modified: list[str]
    removed: list[str]


class AttemptOut(BaseModel):
    id: int = Field(description="Ledger position: attempts are numbered in the order recorded")
    session_id: int
    forge: str = Field(description="The session's forge: github, gitlab or gitea[:INSTANCE]")
    commit_sha: str
    tree_sha: str | None
    message: str
    author: PersonOut = Field(description="Claimed by the commit; not verified")
    committer: PersonOut = Field(description="Claimed by the commit; not verified")
    claimed_timestamp: str | None = Field(description="The commit's own date; never trusted")
    distinct: bool
    branch: str
    changed_files: ChangedFilesOut
    sender: AccountOut = Field(description="The authenticated forge account that pushed")
    pusher: PersonOut
    pushed_at: datetime | None = Field(description="The forge's push time (trusted)")
    received_at: datetime
    trusted_time: datetime = Field(description="pushed_at, or received_at when the forge gave none")
    late: bool = Field(description="trusted_time after the session's current due_at")
    time_unconfirmed: bool = Field(
        description="pushed_at lies more than LABLEDGER_CLOCK_SKEW_SECONDS before received_at: "
        "the forge's time claim is kept but not vouched for"
    )
    push_id: int
    delivery_id: str
    recorded_from: RecordedFrom

    @classmethod
    def of(cls, a: LabAttempt, session: LabSession, skew: timedelta = CLOCK_SKEW) -> AttemptOut:
        return cls.model_validate(attempt_json(a, session, skew))


class AttemptPage(BaseModel):
    items: list[AttemptOut]
    next_cursor: str | None


class AttemptList(BaseModel):
    items: list[AttemptOut]


class PushOut(BaseModel):
    id: int
    delivery_id: str
    forge: str
    repository_id: int
    repository_full_name: str
    ref: str
    before: str
    after: str
    created: bool
    deleted: bool
    forced: bool
    rewrites_history: bool = Field(description="forced and neither created nor deleted")
    pusher: PersonOut
    sender: AccountOut
    pushed_at: datetime | None
    received_at: datetime
    time_unconfirmed: bool = Field(
        description="pushed_at lies more than LABLEDGER_CLOCK_SKEW_SECONDS before received_at"
    )
    recorded_from: RecordedFrom
    commit_shas: list[str] = Field(description="Every commit the push carried, in payload order")
    commit_list_complete: bool = Field(description="False when the forge's list may be truncated")

    @classmethod
    def of(cls, p: PushRecord, skew: timedelta = CLOCK_SKEW) -> PushOut:
        return cls.model_validate(push_json(p, skew))


class DeliveryOut(BaseModel):
    forge: str
    delivery_id: str
    hook_id: str | None
    event: str
    received_at: datetime
    body_sha256: str = Field(description="sha256:<hex> of the raw body as received")

    @classmethod
    def of(cls, d: StoredDelivery) -> DeliveryOut:
        return cls.model_validate(delivery_json(d))


class AttemptDetail(BaseModel):
    attempt: AttemptOut
    push: PushOut
    delivery: DeliveryOut

    @classmethod
    def of(
        cls, r: AttemptRecord, session: LabSession, skew: timedelta = CLOCK_SKEW
    ) -> AttemptDetail:
        return cls(
            attempt=AttemptOut.of(r.attempt, session, skew),
            push=PushOut.of(r.push, skew),
            delivery=DeliveryOut.of(r.delivery),
        )


class DeliveryDetail(BaseModel):
    delivery: DeliveryOut
    push: PushOut | None
    attempts: list[AttemptOut]


class WebhookResult(BaseModel):
    outcome: str = Field(description="recorded | duplicate | ping | ignored")
    delivery_id: str
    push_id: int | None = None
    attempt_ids: list[int] = []
    event: str | None = None
    reason: str | None = Field(
        default=None,
        description="Why a recorded push produced no attempt, e.g. `outside window`",
    )


class ErrorOut(BaseModel):
    error: str
    detail: str
    archive_id: int | None = Field(
        default=None, description="with error `archived`: the archive that holds the entry"
    )


class Health(BaseModel):
    status: str
    database: str


class CheckpointOut(BaseModel):
    tree_size: int
    root_hash: str = Field(description="sha256:<hex> of the Merkle tree root (RFC 9162)")
    created_at: datetime
    note: str = Field(description="The C2SP signed note (tlog-checkpoint) as text")
    public_key: str = Field(description="The verifier key the note is signed with")


class ConsistencyOut(BaseModel):
    old_size: int
    new_size: int
    old_root: str
    new_root: str
    proof: list[str] = Field(description="RFC 9162 consistency proof, base64 hashes")


class ReceiptOut(BaseModel):
    format: str
    leaf_index: int
    tree_size: int
    entry: dict[str, object]
    leaf: str = Field(description="base64 of the canonical leaf bytes")
    leaf_hash: str
    inclusion_proof: list[str] = Field(description="RFC 9162 inclusion proof, base64 hashes")
    checkpoint: str


def error_responses(*described: tuple[int, str]) -> dict[int | str, dict[str, object]]:
    """OpenAPI entries for error answers, all shaped as ErrorOut."""
    return {code: {"model": ErrorOut, "description": text} for code, text in described}


# Every /api/v1 route may answer these; all are ErrorOut, validation errors (422) included.
API_ERRORS = error_responses(
    (400, "malformed request or cursor"),
    (401, "missing or unknown bearer token"),
    (403, "the token lacks the scope this route needs"),
    (404, "not found"),
    (409, "conflict, or not yet covered by a checkpoint (see Retry-After)"),
    (410, "purged by the retention policy; archive_id names the archive that holds it"),
    (413, "body over LABLEDGER_MAX_API_BODY_BYTES"),
    (422, "invalid parameters or body"),
    (503, "database unavailable, or the server at capacity (see Retry-After)"),
)


# The hot read routes answer with plain dicts serialised by pydantic-core (the same encoder,
# so the same JSON as the models above): validating ledger rows into models and FastAPI's
# re-validation of the returned model cost more than the query on a page of attempts (the
# session-page read of bench/reads.py).
# The models stay the OpenAPI schema and `AttemptOut.of` etc. validate these same dicts,
# so the two cannot drift apart (tests/unit/test_api_shapes.py checks every builder).


def json_response(content: object, status_code: int = 200) -> Response:
    return Response(to_json(content), status_code=status_code, media_type="application/json")


def person_json(p: Identity) -> dict[str, object]:
    return {"name": p.name, "email": p.email, "username": p.username}


def attempt_json(
    a: LabAttempt, session: LabSession, skew: timedelta = CLOCK_SKEW
) -> dict[str, object]:
    c, files, trusted_time = a.commit, a.commit.files, a.trusted_time
    source = recorded_from(session.spec.forge, a.delivery_id)
    return {
        "id": a.id,
        "session_id": a.session_id,
        "forge": session.spec.forge,
        "commit_sha": c.sha,
        "tree_sha": c.tree_sha,
        "message": c.message,
        "author": person_json(c.author),
        "committer": person_json(c.committer),
        "claimed_timestamp": c.timestamp,
        "distinct": c.distinct,
        "branch": a.branch,
        "changed_files": {
            "added": list(files.added),
            "modified": list(files.modified),
            "removed": list(files.removed),
        },
        "sender": {"login": a.sender.login, "id": a.sender.id},
        "pusher": person_json(a.pusher),
        "pushed_at": a.pushed_at,
        "received_at": a.received_at,
        "trusted_time": trusted_time,
        "late": session.is_late(trusted_time),
        "time_unconfirmed": is_time_unconfirmed(a.pushed_at, a.received_at, skew, source),
        "push_id": a.push_id,
        "delivery_id": a.delivery_id,
        "recorded_from": source,
    }


def push_json(p: PushRecord, skew: timedelta = CLOCK_SKEW) -> dict[str, object]:
    source = recorded_from(p.forge, p.delivery_id)
    return {
        "id": p.id,
        "delivery_id": p.delivery_id,
        "forge": p.forge,
        "repository_id": p.repository_id,
        "repository_full_name": p.repository_full_name,
        "ref": p.ref,
        "before": p.before,
        "after": p.after,
        "created": p.created,
        "deleted": p.deleted,
        "forced": p.forced,
        "rewrites_history": p.forced and not p.created and not p.deleted,
        "pusher": person_json(p.pusher),
        "sender": {"login": p.sender.login, "id": p.sender.id},
        "pushed_at": p.pushed_at,
        "received_at": p.received_at,
        "time_unconfirmed": is_time_unconfirmed(p.pushed_at, p.received_at, skew, source),
        "recorded_from": source,
        "commit_shas": list(p.commit_shas),
        "commit_list_complete": p.commit_list_complete,
    }


def delivery_json(d: StoredDelivery) -> dict[str, object]:
    return {
        "forge": d.forge,
        "delivery_id": d.delivery_id,
        "hook_id": d.hook_id,
        "event": d.event,
        "received_at": d.received_at,
        "body_sha256": f"sha256:{d.body_sha256.hex()}",
    }


def attempt_row_json(
    r: AttemptRow, session: LabSession, skew: timedelta = CLOCK_SKEW
) -> dict[str, object]:
    """attempt_json, straight from a read query's row (the hot read routes)."""
    files, trusted_time = r.changed_files, r.pushed_at or r.received_at
    source = recorded_from(session.spec.forge, r.delivery_id)
    return {
        "id": r.id,
        "session_id": r.session_id,
        "forge": session.spec.forge,
        "commit_sha": r.commit_sha,
        "tree_sha": r.tree_sha,
        "message": r.message,
        "author": {"name": r.author_name, "email": r.author_email, "username": r.author_username},
        "committer": {
            "name": r.committer_name,
            "email": r.committer_email,
            "username": r.committer_username,
        },
        "claimed_timestamp": r.claimed_timestamp,
        "distinct": r.is_distinct,
        "branch": r.branch,
        "changed_files": {
            "added": files["added"],
            "modified": files["modified"],
            "removed": files["removed"],
        },
        "sender": {"login": r.sender_login, "id": r.sender_id},
        "pusher": {"name": r.pusher_name, "email": r.pusher_email, "username": None},
        "pushed_at": r.pushed_at,
        "received_at": r.received_at,
        "trusted_time": trusted_time,
        "late": session.is_late(trusted_time),
        "time_unconfirmed": is_time_unconfirmed(r.pushed_at, r.received_at, skew, source),
        "push_id": r.push_id,
        "delivery_id": r.delivery_id,
        "recorded_from": source,
    }


def delivery_detail_json(view: DeliveryView, skew: timedelta = CLOCK_SKEW) -> dict[str, object]:
    return {
        "delivery": delivery_json(view.delivery),
        "push": push_json(view.push, skew) if view.push else None,
        "attempts": [attempt_row_json(r, view.sessions[r.session_id], skew) for r in view.attempts],
    }
