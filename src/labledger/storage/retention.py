"""Retention on SQL: the plan, purge, erasure and archive bookkeeping (issue 7).

Only what an archive covers and what is past its window is purged, children before parents
(results, attempts, pushes, deliveries), and a parent only once nothing left refers to it.
Every purge and erasure is one maintenance transaction (storage/maintenance.py) that writes
its audit event, its tombstones and its removals together, or nothing.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select, update

from labledger.core.errors import LedgerError
from labledger.core.leaves import LEAF_FIELDS, entry_leaf_hash, personal_commitment
from labledger.core.model import AuditEvent
from labledger.core.retention import (
    MAINTENANCE_ACTIONS,
    Tombstone,
    Windows,
    counted_from,
    is_expired,
    session_close,
    tombstones_digest,
)
from labledger.storage.engine import WRITE_OPTION
from labledger.storage.leaf_rows import entry_rows
from labledger.storage.maintenance import compact, maintenance
from labledger.storage.sql_store import translate_db_errors
from labledger.storage.sql_writer import SqlWriter
from labledger.storage.tables import (
    archives,
    attempts,
    audit_events,
    deliveries,
    lab_sessions,
    log_entries,
    push_commits,
    pushes,
    session_changes,
    tombstones,
    verification_results,
)

CHUNK = 500
# Purge order: a row goes only after every row that refers to it.
PURGE_ORDER = ("verification", "attempt", "push", "delivery", "audit")
TABLE_OF = {
    "verification": verification_results,
    "attempt": attempts,
    "push": pushes,
    "delivery": deliveries,
    "audit": audit_events,
}


class RetentionError(LedgerError):
    pass


@dataclass(slots=True)
class TablePlan:
    expired: int = 0  # past the window
    purgeable: int = 0  # past the window, covered by an archive, nothing left refers to it
    waiting_for_archive: int = 0  # past the window, not yet in any archive


@dataclass(slots=True)
class RetentionPlan:
    as_of: datetime
    archived_end: int  # leaves [0, archived_end) are in archives
    tables: dict[str, TablePlan] = field(default_factory=dict)
    raw_bodies: TablePlan = field(default_factory=TablePlan)
    purge: dict[str, list[int]] = field(default_factory=dict)  # kind -> ids
    drop_bodies: list[int] = field(default_factory=list)  # delivery ids
    leaf_of: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ArchiveRecord:
    id: int
    first_leaf: int
    end_leaf: int
    location: str
    created_at: datetime


# -- reading ------------------------------------------------------------------------------


def archive_list(conn: Connection) -> list[ArchiveRecord]:
    rows = conn.execute(select(archives).order_by(archives.c.end_leaf, archives.c.id))
    return [ArchiveRecord(r.id, r.first_leaf, r.end_leaf, r.location, r.created_at) for r in rows]


def archived_end(conn: Connection) -> int:
    value = conn.execute(select(func.max(archives.c.end_leaf))).scalar_one()
    return int(value or 0)


def archive_of(archive_rows: Sequence[ArchiveRecord], leaf_index: int) -> int | None:
    ends = [a.end_leaf for a in archive_rows]
    at = bisect.bisect_right(ends, leaf_index)
    if at < len(archive_rows) and archive_rows[at].first_leaf <= leaf_index:
        return archive_rows[at].id
    return None


def purged_archive(engine: Engine, kind: str, entry_id: int) -> int | None:
    """The archive holding a purged entry, or None when the entry was never purged."""
    with translate_db_errors(), engine.connect() as conn:
        row = conn.execute(
            select(tombstones.c.archive_id).where(
                tombstones.c.entry_type == kind,
                tombstones.c.entry_id == entry_id,
                tombstones.c.what == "row",
            )
        ).one_or_none()
    return None if row is None else int(row.archive_id or 0)


def _leaf_indices(conn: Connection, kind: str) -> dict[int, int]:
    rows = conn.execute(
        select(log_entries.c.entry_id, log_entries.c.leaf_index).where(
            log_entries.c.entry_type == kind
        )
    )
    return {r.entry_id: r.leaf_index for r in rows}


def _session_closes(conn: Connection) -> dict[int, datetime | None]:
    effective = {
        r.id: (r.due_at, r.closes_at)
        for r in conn.execute(
            select(lab_sessions.c.id, lab_sessions.c.due_at, lab_sessions.c.closes_at)
        )
    }
    changes = conn.execute(
        select(
            session_changes.c.session_id, session_changes.c.due_at, session_changes.c.closes_at
        ).order_by(session_changes.c.id)
    )
    for change in changes:  # the newest change wins
        effective[change.session_id] = (change.due_at, change.closes_at)
    return {sid: session_close(due, closes) for sid, (due, closes) in effective.items()}


def plan_retention(conn: Connection, windows: Windows, now: datetime) -> RetentionPlan:
    """What is past its window, what of it an archive covers, and what may go today."""
    r: Any  # the rows of several queries below
    end = archived_end(conn)
    plan = RetentionPlan(as_of=now, archived_end=end)
    closes = _session_closes(conn)

    def archived(kind: str, entry_id: int, leaf: dict[int, int]) -> bool:
        index = leaf.get(entry_id)
        if index is not None:
            plan.leaf_of[(kind, entry_id)] = index
        return index is not None and index < end

    # Attempts: counted from their session's close.
    attempt_leaf = _leaf_indices(conn, "attempt")
    attempt_from: dict[int, datetime] = {}
    attempt_push: dict[int, int] = {}
    attempt_delivery: dict[int, int] = {}
    for r in conn.execute(
        select(
            attempts.c.id,
            attempts.c.session_id,
            attempts.c.push_id,
            attempts.c.delivery_pk,
            attempts.c.received_at,
        )
    ):
        attempt_from[r.id] = counted_from(closes.get(r.session_id), r.received_at)
        attempt_push[r.id] = r.push_id
        attempt_delivery[r.id] = r.delivery_pk

    # Verification results: counted from their attempt's moment, or their own if later.
    result_leaf = _leaf_indices(conn, "verification")
    results_of: dict[int, list[int]] = defaultdict(list)
    purge_results: set[int] = set()
    table = plan.tables["verification_results"] = TablePlan()
    for r in conn.execute(
        select(
            verification_results.c.id,
            verification_results.c.attempt_id,
            verification_results.c.reported_at,
        )
    ):
        results_of[r.attempt_id].append(r.id)
        base = attempt_from.get(r.attempt_id, r.reported_at)
        if is_expired(max(base, r.reported_at), windows.records, now):
            table.expired += 1
            if archived("verification", r.id, result_leaf):
                purge_results.add(r.id)
            else:
                table.waiting_for_archive += 1

    purge_attempts: set[int] = set()
    table = plan.tables["attempts"] = TablePlan()
    for attempt_id, base in attempt_from.items():
        if not is_expired(base, windows.records, now):
            continue
        table.expired += 1
        if not archived("attempt", attempt_id, attempt_leaf):
            table.waiting_for_archive += 1
        elif all(v in purge_results for v in results_of.get(attempt_id, ())):
            purge_attempts.add(attempt_id)

    # Pushes and deliveries: counted from the latest of their attempts' moments.
    attempts_of_push: dict[int, list[int]] = defaultdict(list)
    attempts_of_delivery: dict[int, list[int]] = defaultdict(list)
    for attempt_id, push_id in attempt_push.items():
        attempts_of_push[push_id].append(attempt_id)
        attempts_of_delivery[attempt_delivery[attempt_id]].append(attempt_id)

    delivery_rows = {
        r.id: r
        for r in conn.execute(
            select(
                deliveries.c.id,
                deliveries.c.received_at,
                (func.length(deliveries.c.body_zlib) > 0).label("has_body"),
            )
        )
    }
    push_leaf = _leaf_indices(conn, "push")
    push_from: dict[int, datetime] = {}
    push_of_delivery: dict[int, int] = {}
    purge_pushes: set[int] = set()
    table = plan.tables["pushes"] = TablePlan()
    for r in conn.execute(select(pushes.c.id, pushes.c.delivery_pk)):
        own = delivery_rows[r.delivery_pk].received_at
        base = max([own, *(attempt_from[a] for a in attempts_of_push.get(r.id, ()))])
        push_from[r.id] = base
        push_of_delivery[r.delivery_pk] = r.id
        if not is_expired(base, windows.records, now):
            continue
        table.expired += 1
        if not archived("push", r.id, push_leaf):
            table.waiting_for_archive += 1
        elif all(a in purge_attempts for a in attempts_of_push.get(r.id, ())):
            purge_pushes.add(r.id)

    delivery_leaf = _leaf_indices(conn, "delivery")
    purge_deliveries: set[int] = set()
    table = plan.tables["deliveries"] = TablePlan()
    bodies = plan.raw_bodies
    for delivery_id, r in delivery_rows.items():
        carried_by = push_of_delivery.get(delivery_id)
        base = max(
            [
                r.received_at,
                *([push_from[carried_by]] if carried_by is not None else []),
                *(attempt_from[a] for a in attempts_of_delivery.get(delivery_id, ())),
            ]
        )
        is_archived = archived("delivery", delivery_id, delivery_leaf)
        if is_expired(base, windows.records, now):
            table.expired += 1
            if not is_archived:
                table.waiting_for_archive += 1
            elif (carried_by is None or carried_by in purge_pushes) and all(
                a in purge_attempts for a in attempts_of_delivery.get(delivery_id, ())
            ):
                purge_deliveries.add(delivery_id)
                continue
        if r.has_body and is_expired(base, windows.raw_bodies, now):
            bodies.expired += 1
            if is_archived:
                plan.drop_bodies.append(delivery_id)
            else:
                bodies.waiting_for_archive += 1
    bodies.purgeable = len(plan.drop_bodies)

    audit_leaf = _leaf_indices(conn, "audit")
    purge_audit: set[int] = set()
    table = plan.tables["audit_events"] = TablePlan()
    for r in conn.execute(
        select(audit_events.c.id, audit_events.c.occurred_at).where(
            audit_events.c.action.not_in(MAINTENANCE_ACTIONS)
        )
    ):
        if is_expired(r.occurred_at, windows.audit, now):
            table.expired += 1
            if archived("audit", r.id, audit_leaf):
                purge_audit.add(r.id)
            else:
                table.waiting_for_archive += 1

    chosen = {
        "verification": purge_results,
        "attempt": purge_attempts,
        "push": purge_pushes,
        "delivery": purge_deliveries,
        "audit": purge_audit,
    }
    for kind, ids in chosen.items():
        plan.purge[kind] = sorted(ids)
        plan.tables[TABLE_OF[kind].name].purgeable = len(ids)
    return plan


# -- purge --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PurgeResult:
    event_id: int | None
    removed: dict[str, int]
    bodies_dropped: int


def purge(
    engine: Engine,
    windows: Windows,
    now: datetime,
    actor: str,
    progress: Callable[[int], None] = lambda n: None,
) -> PurgeResult:
    """Remove what an archive covers and is past its window, leaving tombstones.

    `progress` hears of every removed row and dropped body, chunk by chunk."""
    tables = (
        "verification_results",
        "attempts",
        "push_commits",
        "pushes",
        "deliveries",
        "audit_events",
    )
    with maintenance(engine, tables) as conn:
        plan = plan_retention(conn, windows, now)
        if not any(plan.purge.values()) and not plan.drop_bodies:
            return PurgeResult(None, {}, 0)
        archive_rows = archive_list(conn)
        stones = [
            Tombstone(
                kind, entry_id, "row", archive_of(archive_rows, plan.leaf_of[(kind, entry_id)])
            )
            for kind in PURGE_ORDER
            for entry_id in plan.purge[kind]
        ]
        stones += [
            Tombstone(
                "delivery", d, "body", archive_of(archive_rows, plan.leaf_of[("delivery", d)])
            )
            for d in plan.drop_bodies
        ]
        removed = {TABLE_OF[k].name: len(v) for k, v in plan.purge.items() if v}
        event_id = _audit(
            conn,
            AuditEvent(
                actor=actor,
                action="purge",
                target_type="ledger",
                target_id="retention",
                details={
                    "removed": removed,
                    "raw_bodies_dropped": len(plan.drop_bodies),
                    "archived_end": plan.archived_end,
                    "windows_days": {
                        "records": windows.records.days,
                        "raw_bodies": windows.raw_bodies.days,
                        "audit": windows.audit.days,
                    },
                    "tombstones": len(stones),
                    "tombstones_sha256": tombstones_digest(stones),
                },
                occurred_at=now,
            ),
        )
        _insert_tombstones(conn, stones, event_id)
        for kind in PURGE_ORDER:
            ids = plan.purge[kind]
            target = TABLE_OF[kind]
            for chunk in _chunks(ids):
                if kind == "push":
                    conn.execute(delete(push_commits).where(push_commits.c.push_id.in_(chunk)))
                conn.execute(delete(target).where(target.c.id.in_(chunk)))
                progress(len(chunk))
        for chunk in _chunks(plan.drop_bodies):
            conn.execute(update(deliveries).where(deliveries.c.id.in_(chunk)).values(body_zlib=b""))
            progress(len(chunk))
    compact(engine, tables)
    return PurgeResult(event_id, removed, len(plan.drop_bodies))


# -- erasure ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErasureResult:
    event_id: int | None
    attempts: int
    pushes: int
    raw_bodies: int


# What erasure blanks on each kind. sender_login is NOT NULL in the schema: it becomes ''.
ERASED_VALUES: dict[str, dict[str, Any]] = {
    "attempt": {name: None for name in LEAF_FIELDS["attempt"][1]} | {"personal_salt": None},
    "push": {"pusher_name": None, "pusher_email": None, "sender_login": "", "personal_salt": None},
}


def erase(
    engine: Engine,
    *,
    subject_id: str | None = None,
    account: tuple[str, int] | None = None,
    reason: str,
    actor: str,
    now: datetime,
) -> ErasureResult:
    """Make one person's personal fields and raw bodies unreadable; the tree still verifies."""
    if (subject_id is None) == (account is None):
        raise RetentionError("name exactly one of a subject id or a forge account")
    if not reason.strip():
        raise RetentionError("an erasure needs a reason (e.g. the request's reference)")
    with maintenance(engine, ("attempts", "pushes", "deliveries")) as conn:
        attempt_ids, push_ids, delivery_ids = _erasure_targets(conn, subject_id, account)
        done = _tombstoned(conn, "personal")
        attempt_ids = [a for a in attempt_ids if ("attempt", a) not in done]
        push_ids = [p for p in push_ids if ("push", p) not in done]
        delivery_ids = _with_body(conn, delivery_ids)
        if not (attempt_ids or push_ids or delivery_ids):
            return ErasureResult(None, 0, 0, 0)
        stones = [
            *_commitments(conn, "attempt", attempt_ids),
            *_commitments(conn, "push", push_ids),
            *(Tombstone("delivery", d, "body") for d in delivery_ids),
        ]
        target_type, target_id = (
            ("subject", str(subject_id))
            if account is None
            else ("forge_account", f"{account[0]}:{account[1]}")
        )
        event_id = _audit(
            conn,
            AuditEvent(
                actor=actor,
                action="erase",
                target_type=target_type,
                target_id=target_id,
                details={
                    "reason": reason,
                    "attempts": len(attempt_ids),
                    "pushes": len(push_ids),
                    "raw_bodies": len(delivery_ids),
                    "tombstones": len(stones),
                    "tombstones_sha256": tombstones_digest(stones),
                },
                occurred_at=now,
            ),
        )
        _insert_tombstones(conn, stones, event_id)
        for kind, ids in (("attempt", attempt_ids), ("push", push_ids)):
            table = TABLE_OF[kind]
            for chunk in _chunks(ids):
                conn.execute(update(table).where(table.c.id.in_(chunk)).values(ERASED_VALUES[kind]))
        for chunk in _chunks(delivery_ids):
            conn.execute(update(deliveries).where(deliveries.c.id.in_(chunk)).values(body_zlib=b""))
    compact(engine, ("attempts", "pushes", "deliveries"))
    return ErasureResult(event_id, len(attempt_ids), len(push_ids), len(delivery_ids))


def _erasure_targets(
    conn: Connection, subject_id: str | None, account: tuple[str, int] | None
) -> tuple[list[int], list[int], list[int]]:
    if subject_id is not None:
        rows = conn.execute(
            select(attempts.c.id, attempts.c.push_id, attempts.c.delivery_pk)
            .join(lab_sessions, lab_sessions.c.id == attempts.c.session_id)
            .where(lab_sessions.c.subject_id == subject_id)
        ).all()
        attempt_ids = sorted({r.id for r in rows})
        push_ids = sorted({r.push_id for r in rows})
    else:
        assert account is not None
        forge, sender_id = account
        push_ids = sorted(
            conn.execute(
                select(pushes.c.id).where(pushes.c.forge == forge, pushes.c.sender_id == sender_id)
            ).scalars()
        )
        attempt_ids = sorted(
            {
                a
                for chunk in _chunks(push_ids)
                for a in conn.execute(
                    select(attempts.c.id).where(attempts.c.push_id.in_(chunk))
                ).scalars()
            }
        )
    delivery_ids = sorted(
        {
            d
            for chunk in _chunks(push_ids)
            for d in conn.execute(
                select(pushes.c.delivery_pk).where(pushes.c.id.in_(chunk))
            ).scalars()
        }
    )
    return attempt_ids, push_ids, delivery_ids


def _tombstoned(conn: Connection, what: str) -> set[tuple[str, int]]:
    rows = conn.execute(
        select(tombstones.c.entry_type, tombstones.c.entry_id).where(tombstones.c.what == what)
    )
    return {(r.entry_type, r.entry_id) for r in rows}


def _with_body(conn: Connection, delivery_ids: list[int]) -> list[int]:
    return sorted(
        d
        for chunk in _chunks(delivery_ids)
        for d in conn.execute(
            select(deliveries.c.id).where(
                deliveries.c.id.in_(chunk), func.length(deliveries.c.body_zlib) > 0
            )
        ).scalars()
    )


def _commitments(conn: Connection, kind: str, ids: list[int]) -> list[Tombstone]:
    """The leaf's personal commitment of each row, once the row is proven to match its leaf."""
    logged = {}
    for chunk in _chunks(ids):
        logged.update(
            {
                r.entry_id: bytes(r.leaf_hash)
                for r in conn.execute(
                    select(log_entries.c.entry_id, log_entries.c.leaf_hash).where(
                        log_entries.c.entry_type == kind, log_entries.c.entry_id.in_(chunk)
                    )
                )
            }
        )
    waiting = [i for i in ids if i not in logged]
    if waiting:
        raise RetentionError(
            f"{len(waiting)} {kind} entries are not in the Merkle log yet; "
            "run `labledger integrate` and erase again"
        )
    rows = entry_rows(conn, kind, ids)
    personal = LEAF_FIELDS[kind][1]
    stones = []
    for entry_id in ids:
        row = rows[entry_id]
        if entry_leaf_hash(kind, row) != logged[entry_id]:
            raise RetentionError(
                f"{kind} {entry_id} no longer matches its logged leaf; erasing it would hide "
                "that: run `labledger verify` and resolve it first"
            )
        salt = bytes(row.get("personal_salt") or b"")
        commitment = personal_commitment(salt, {n: row[n] for n in personal})
        stones.append(Tombstone(kind, entry_id, "personal", None, commitment))
    return stones


# -- shared -------------------------------------------------------------------------------


def _audit(conn: Connection, event: AuditEvent) -> int:
    writer = SqlWriter(conn)
    event_id = writer.append_audit(event)
    writer.flush_log_queue()
    return event_id


def _insert_tombstones(conn: Connection, stones: list[Tombstone], event_id: int) -> None:
    rows = [
        {
            "entry_type": t.entry_type,
            "entry_id": t.entry_id,
            "what": t.what,
            "event_id": event_id,
            "archive_id": t.archive_id,
            "personal_sha256": t.personal_sha256,
        }
        for t in stones
    ]
    for start in range(0, len(rows), CHUNK):
        conn.execute(tombstones.insert(), rows[start : start + CHUNK])


def _chunks(ids: Sequence[int] | Iterable[int]) -> Iterable[list[int]]:
    items = list(ids)
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def record_archive(
    engine: Engine,
    *,
    first_leaf: int,
    end_leaf: int,
    checkpoint_note: str,
    manifest_sha256: bytes,
    location: str,
    counts: dict[str, int],
    actor: str,
    now: datetime,
) -> int:
    """Note a written archive in the ledger, with its audit event, in one transaction."""
    with translate_db_errors(), engine.connect() as conn:
        conn = conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            if archived_end(conn) != first_leaf:
                raise RetentionError(
                    "another archive was recorded while this one was written; archive again"
                )
            archive_id = int(
                conn.execute(
                    archives.insert()
                    .values(
                        first_leaf=first_leaf,
                        end_leaf=end_leaf,
                        checkpoint_note=checkpoint_note,
                        manifest_sha256=manifest_sha256,
                        location=location,
                        created_at=now,
                    )
                    .returning(archives.c.id)
                ).scalar_one()
            )
            _audit(
                conn,
                AuditEvent(
                    actor=actor,
                    action="archive",
                    target_type="archive",
                    target_id=str(archive_id),
                    details={
                        "first_leaf": first_leaf,
                        "end_leaf": end_leaf,
                        "manifest_sha256": manifest_sha256.hex(),
                        "location": location,
                        "entries": counts,
                    },
                    occurred_at=now,
                ),
            )
    return archive_id
