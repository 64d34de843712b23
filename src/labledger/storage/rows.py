"""Reading ledger rows into core values: the queries and the row-to-value mappers."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, select
from sqlalchemy.sql import Select

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


def attempt_query() -> Select[Any]:
    return select(
        attempts,
        pushes.c.sender_login,
        pushes.c.sender_id,
        pushes.c.pusher_name,
        pushes.c.pusher_email,
        deliveries.c.delivery_id,
    ).select_from(
        attempts.join(pushes, pushes.c.id == attempts.c.push_id).join(
            deliveries, deliveries.c.id == attempts.c.delivery_pk
        )
    )


def read_push_record(conn: Connection, push_id: int) -> PushRecord:
    row = conn.execute(
        select(pushes, deliveries.c.delivery_id, deliveries.c.received_at)
        .select_from(pushes.join(deliveries, deliveries.c.id == pushes.c.delivery_pk))
        .where(pushes.c.id == push_id)
    ).one()
    shas = conn.execute(
        select(push_commits.c.commit_sha)
        .where(push_commits.c.push_id == push_id)
        .order_by(push_commits.c.position)
    ).scalars()
    return PushRecord(
        id=row.id,
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


def session_from_row(row: Row[Any]) -> LabSession:
    session = _original_session(row)
    mapping = row._mapping
    if mapping.get("change_id") is None:
        return session
    spec = replace(
        session.spec, due_at=mapping["changed_due_at"], closes_at=mapping["changed_closes_at"]
    )
    return replace(session, spec=spec, deadline_changes=int(mapping["deadline_changes"]))


def _original_session(row: Row[Any]) -> LabSession:
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


def attempt_from_row(row: Row[Any]) -> LabAttempt:
    files = row.changed_files
    commit = Commit(
        sha=row.commit_sha,
        tree_sha=row.tree_sha,
        message=row.message,
        author=Identity(row.author_name, row.author_email, row.author_username),
        committer=Identity(row.committer_name, row.committer_email, row.committer_username),
        timestamp=row.claimed_timestamp,
        distinct=row.is_distinct,
        files=ChangedFiles(
            tuple(files["added"]), tuple(files["modified"]), tuple(files["removed"])
        ),
    )
    return LabAttempt(
        id=row.id,
        session_id=row.session_id,
        commit=commit,
        branch=row.branch,
        sender=Account(row.sender_login, row.sender_id),
        pusher=Identity(row.pusher_name, row.pusher_email),
        pushed_at=row.pushed_at,
        received_at=row.received_at,
        push_id=row.push_id,
        delivery_id=row.delivery_id,
    )
