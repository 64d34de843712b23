"""Reading ledger rows into core values: the queries and the row-to-value mappers."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, NamedTuple

from pydantic_core import from_json
from sqlalchemy import (
    Connection,
    Dialect,
    Result,
    Row,
    Text,
    bindparam,
    cast,
    func,
    select,
    type_coerce,
)
from sqlalchemy.sql import ColumnElement, Select
from sqlalchemy.types import TypeDecorator

from labledger.core.errors import NotFound
from labledger.core.model import (
    Account,
    ChangedFiles,
    Commit,
    Identity,
    LabAttempt,
    LabSession,
    NewVerification,
    PushRecord,
    SessionSpec,
    StoredDelivery,
    VerificationResult,
)
from labledger.storage.tables import (
    attempts,
    deliveries,
    lab_sessions,
    push_commits,
    pushes,
    session_changes,
)


class AttemptRow(NamedTuple):
    """An attempt as the read queries return it, before it becomes a LabAttempt.

    The API's hot reads turn these straight into JSON: one object per row instead of seven
    frozen dataclasses, which cost more than the query on a 100-attempt page.
    """

    id: int
    session_id: int
    commit_sha: str
    tree_sha: str | None
    message: str
    author_name: str | None
    author_email: str | None
    author_username: str | None
    committer_name: str | None
    committer_email: str | None
    committer_username: str | None
    claimed_timestamp: str | None
    is_distinct: bool
    changed_files: dict[str, list[str]]
    branch: str
    pushed_at: datetime | None
    received_at: datetime
    push_id: int
    delivery_pk: int
    # What the attempt takes from its push and delivery (_FACT_COLUMNS), last so that a row of
    # the attempt's own columns plus a push's facts makes an AttemptRow.
    sender_login: str
    sender_id: int
    pusher_name: str | None
    pusher_email: str | None
    delivery_id: str


class StoredJson(TypeDecorator[Any]):
    """A JSON column read as the text the database holds, decoded by pydantic-core.

    Selected through CAST(... AS TEXT): the driver hands back text instead of decoding it
    with the json module (psycopg's loader, SQLAlchemy's on SQLite), which cost more than
    the rest of an attempt's row on a 100-attempt page.
    """

    impl = Text
    cache_ok = True

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else from_json(value)


def _stored_json(column: ColumnElement[Any]) -> ColumnElement[Any]:
    return type_coerce(cast(column, Text), StoredJson).label(column.name)


_OWN_COLUMNS: tuple[ColumnElement[Any], ...] = (
    attempts.c.id,
    attempts.c.session_id,
    attempts.c.commit_sha,
    attempts.c.tree_sha,
    attempts.c.message,
    attempts.c.author_name,
    attempts.c.author_email,
    attempts.c.author_username,
    attempts.c.committer_name,
    attempts.c.committer_email,
    attempts.c.committer_username,
    attempts.c.claimed_timestamp,
    attempts.c.is_distinct,
    _stored_json(attempts.c.changed_files),
    attempts.c.branch,
    attempts.c.pushed_at,
    attempts.c.received_at,
    attempts.c.push_id,
    attempts.c.delivery_pk,
)
_FACT_COLUMNS = (
    pushes.c.sender_login,
    pushes.c.sender_id,
    pushes.c.pusher_name,
    pushes.c.pusher_email,
    deliveries.c.delivery_id,
)
_PUSHES_WITH_DELIVERY = pushes.join(deliveries, deliveries.c.id == pushes.c.delivery_pk)


def attempt_rows(result: Result[Any]) -> list[AttemptRow]:
    # .all(): one fetchall; iterating a psycopg result fetches row by row (bench/reads.py).
    return [AttemptRow._make(r) for r in result.all()]


def attempt_query() -> Select[Any]:
    return select(*_OWN_COLUMNS, *_FACT_COLUMNS).select_from(
        attempts.join(_PUSHES_WITH_DELIVERY, pushes.c.id == attempts.c.push_id)
    )


def _page_query() -> Select[Any]:
    """A session's attempts in ledger order, each joined to its push and delivery."""
    return (
        attempt_query()
        .where(attempts.c.session_id == bindparam("session_id"), attempts.c.id > bindparam("after"))
        .order_by(attempts.c.id)
        .limit(bindparam("limit"))
    )


def _page_query_by_push() -> Select[Any]:
    """_page_query with each push and delivery read once for the whole page (PostgreSQL).

    Joined row by row, PostgreSQL looks up the push and the delivery of every attempt (100
    primary-key lookups into each, `deliveries` being the widest table) though a push's
    attempts are consecutive and a page holds few pushes. MATERIALIZED keeps the planner
    from folding the facts back into a per-attempt join. One statement, so one snapshot
    even under READ COMMITTED. SQLite keeps the plain join: its lookups are in-process
    B-tree searches, cheaper than materialising the two CTEs (the session-page read of
    bench/reads.py).
    """
    page = (
        select(*_OWN_COLUMNS)
        .where(attempts.c.session_id == bindparam("session_id"), attempts.c.id > bindparam("after"))
        .order_by(attempts.c.id)
        .limit(bindparam("limit"))
        .cte("page")
    )
    facts = (
        select(pushes.c.id, *_FACT_COLUMNS)
        .select_from(_PUSHES_WITH_DELIVERY)
        .where(pushes.c.id.in_(select(page.c.push_id)))
        .cte("facts")
        .prefix_with("MATERIALIZED")
    )
    return (
        select(page, *(facts.c[c.name] for c in _FACT_COLUMNS))
        .select_from(page.join(facts, facts.c.id == page.c.push_id))
        .order_by(page.c.id)
    )


def delivery_attempt_rows(result: Result[Any], push: PushRecord) -> list[AttemptRow]:
    """A delivery's attempts (their own columns) completed with the facts of its one push."""
    facts = (push.sender.login, push.sender.id, push.pusher.name, push.pusher.email)
    return [AttemptRow._make((*r, *facts, push.delivery_id)) for r in result.all()]


_PUSH = (
    select(pushes, deliveries.c.delivery_id, deliveries.c.received_at)
    .select_from(pushes.join(deliveries, deliveries.c.id == pushes.c.delivery_pk))
    .where(pushes.c.id == bindparam("push_id"))
)
_CARRIED = (
    select(push_commits.c.commit_sha)
    .where(push_commits.c.push_id == bindparam("push_id"))
    .order_by(push_commits.c.position)
)


def read_push_record(conn: Connection, push_id: int) -> PushRecord:
    row = conn.execute(_PUSH, {"push_id": push_id}).one_or_none()
    if row is None:  # unknown, or purged by retention
        raise NotFound("push", push_id)
    return push_record_from_row(conn, row, row.id)


def push_record_from_row(conn: Connection, row: Row[Any], push_id: int) -> PushRecord:
    """A push from a row holding its columns, its delivery_id and received_at; reads the
    commits it carried."""
    shas = conn.execute(_CARRIED, {"push_id": push_id}).scalars().all()
    return PushRecord(
        id=push_id,
        delivery_id=row.delivery_id,
        forge=row.forge,
        repository_id=row.repository_id,
        repository_full_name=row.repository_full_name,
        ref=row.ref,
        before=row.before_sha,
        after=row.after_sha,
        created=row.created,
        deleted=row.deleted,
        forced=row.forced,
        pusher=Identity(row.pusher_name, row.pusher_email),
        sender=Account(row.sender_login, row.sender_id),
        pushed_at=row.pushed_at,
        received_at=row.received_at,
        commit_shas=tuple(shas),
        commit_list_complete=row.commit_list_complete,
    )


def session_query() -> Select[Any]:
    """Sessions with their effective dates: the newest deadline change's, else their own."""
    newest = session_changes.alias("newest_change")
    every = session_changes.alias("every_change")
    newest_id = (
        select(func.max(every.c.id)).where(every.c.session_id == lab_sessions.c.id)
    ).scalar_subquery()
    count = (
        select(func.count()).select_from(every).where(every.c.session_id == lab_sessions.c.id)
    ).scalar_subquery()
    return select(
        lab_sessions,
        newest.c.id.label("change_id"),
        newest.c.due_at.label("changed_due_at"),
        newest.c.closes_at.label("changed_closes_at"),
        count.label("deadline_changes"),
    ).select_from(lab_sessions.outerjoin(newest, newest.c.id == newest_id))


def session_from_row(row: Any) -> LabSession:
    """A row of session_query (a SQLAlchemy Row, or DriverSelect's), or of lab_sessions alone."""
    session = _original_session(row)
    if getattr(row, "change_id", None) is None:
        return session
    spec = replace(session.spec, due_at=row.changed_due_at, closes_at=row.changed_closes_at)
    return replace(session, spec=spec, deadline_changes=int(row.deadline_changes))


def _original_session(row: Any) -> LabSession:
    spec = SessionSpec(
        lab_id=row.lab_id,
        subject_id=row.subject_id,
        forge=row.forge,
        repository_id=row.repository_id,
        repository_full_name=row.repository_full_name,
        opens_at=row.opens_at,
        branch_glob=row.branch_glob,
        due_at=row.due_at,
        closes_at=row.closes_at,
    )
    return LabSession(
        id=row.id,
        spec=spec,
        created_at=row.created_at,
        original_due_at=row.due_at,
        original_closes_at=row.closes_at,
    )


def iso_or_none(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def verification_from_row(row: Row[Any]) -> VerificationResult:
    return VerificationResult(
        row.id,
        NewVerification(
            attempt_id=row.attempt_id,
            verifier=row.verifier,
            run_id=row.run_id,
            status=row.status,
            score_milli=row.score_milli,
            max_score_milli=row.max_score_milli,
            details=row.details,
            reported_at=row.reported_at,
            actor=row.actor,
        ),
    )


def delivery_from_row(row: Row[Any]) -> StoredDelivery:
    return StoredDelivery(
        id=row.id,
        forge=row.forge,
        delivery_id=row.delivery_id,
        hook_id=row.hook_id,
        event=row.event,
        body_sha256=bytes(row.body_sha256),
        received_at=row.received_at,
    )


def attempt_from_row(row: Row[Any] | AttemptRow) -> LabAttempt:
    r = row if isinstance(row, AttemptRow) else AttemptRow._make(row)
    files = r.changed_files
    commit = Commit(
        sha=r.commit_sha,
        tree_sha=r.tree_sha,
        message=r.message,
        author=Identity(r.author_name, r.author_email, r.author_username),
        committer=Identity(r.committer_name, r.committer_email, r.committer_username),
        timestamp=r.claimed_timestamp,
        distinct=r.is_distinct,
        files=ChangedFiles(
            tuple(files["added"]), tuple(files["modified"]), tuple(files["removed"])
        ),
    )
    return LabAttempt(
        id=r.id,
        session_id=r.session_id,
        commit=commit,
        branch=r.branch,
        sender=Account(r.sender_login, r.sender_id),
        pusher=Identity(r.pusher_name, r.pusher_email),
        pushed_at=r.pushed_at,
        received_at=r.received_at,
        push_id=r.push_id,
        delivery_id=r.delivery_id,
    )


# The read paths' statements, built once and run with parameters: building a select per call
# (joins, aliases, correlated subqueries) and hashing it into a cache key cost more than the
# query itself on a large ledger.
SESSION_BY_ID = session_query().where(lab_sessions.c.id == bindparam("session_id"))
SESSIONS_BY_ID = session_query().where(lab_sessions.c.id.in_(bindparam("ids", expanding=True)))
ATTEMPT_PAGE = {"sqlite": _page_query(), "postgresql": _page_query_by_push()}
ATTEMPTS_BY_COMMIT = (
    attempt_query().where(attempts.c.commit_sha == bindparam("commit_sha")).order_by(attempts.c.id)
)
# A delivery's attempts without their push and delivery: the delivery route has read both.
OWN_ATTEMPTS_BY_DELIVERY = (
    select(*_OWN_COLUMNS)
    .where(attempts.c.delivery_pk == bindparam("delivery_pk"))
    .order_by(attempts.c.id)
)
ATTEMPT_BY_ID = attempt_query().where(attempts.c.id == bindparam("attempt_id"))
_DELIVERY_COLUMNS = (
    deliveries.c.id,
    deliveries.c.forge,
    deliveries.c.delivery_id,
    deliveries.c.hook_id,
    deliveries.c.event,
    deliveries.c.received_at,
    deliveries.c.body_sha256,
)  # not the compressed body: no read here needs it
DELIVERY_BY_KEY: Select[Any] = select(*_DELIVERY_COLUMNS).where(
    deliveries.c.forge == bindparam("forge"), deliveries.c.delivery_id == bindparam("delivery_id")
)
DELIVERY_BY_PK: Select[Any] = select(*_DELIVERY_COLUMNS).where(
    deliveries.c.id == bindparam("delivery_pk")
)
PUSH_OF_DELIVERY = select(pushes.c.id).where(pushes.c.delivery_pk == bindparam("delivery_pk"))
# A delivery and its push (if any) in one statement, for push_record_from_row: the push's id
# is `push_id`, and its forge is the delivery's (the forge whose webhook carried it).
_PUSH_COLUMNS = [
    pushes.c.id.label("push_id"),
    *(c for c in pushes.c if c.name not in ("id", "forge", "delivery_pk", "personal_salt")),
]
DELIVERY_WITH_PUSH = (
    select(*_DELIVERY_COLUMNS, *_PUSH_COLUMNS)
    .select_from(deliveries.outerjoin(pushes, pushes.c.delivery_pk == deliveries.c.id))
    .where(
        deliveries.c.forge == bindparam("forge"),
        deliveries.c.delivery_id == bindparam("delivery_id"),
    )
)


def sessions_by_id(conn: Connection, ids: set[int]) -> dict[int, LabSession]:
    """The sessions these attempts belong to, in one query."""
    if not ids:
        return {}
    rows = conn.execute(SESSIONS_BY_ID, {"ids": sorted(ids)})
    return {r.id: session_from_row(r) for r in rows}


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """What one delivery produced, as the API shows it: its attempts as rows, with sessions."""

    delivery: StoredDelivery
    push: PushRecord | None
    attempts: list[AttemptRow]
    sessions: dict[int, LabSession]
