"""Retention on SQL: purge and archive bookkeeping (issue 7, RETENTION.md).

Every purge is one maintenance transaction (storage/maintenance.py) that writes its audit
event, its tombstones and its removals together, or nothing. What may go is decided by
storage/retention_plan.py; erasure lives in storage/erasure.py.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Engine, delete, select, update

from labledger.core.errors import RetentionRefused
from labledger.core.model import AuditEvent
from labledger.core.retention_rules import Tombstone, Windows, tombstones_digest
from labledger.storage.engine import WRITE_OPTION
from labledger.storage.maintenance import compact, maintenance
from labledger.storage.retention_plan import TABLE_NAMES, archived_end, plan_retention
from labledger.storage.sql_store import translate_db_errors
from labledger.storage.sql_writer import SqlWriter
from labledger.storage.tables import (
    archives,
    attempts,
    audit_events,
    deliveries,
    outbox_events,
    outbox_states,
    push_commits,
    pushes,
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
# What a purge changes, in the order rows go (push_commits with their push).
PURGED_TABLES = (
    "verification_results",
    "attempts",
    "push_commits",
    "pushes",
    "deliveries",
    "audit_events",
    "outbox_states",
    "outbox_events",
)

__all__ = ["RetentionRefused", "purge", "purged_archive", "record_archive"]


@dataclass(frozen=True, slots=True)
class ArchiveRecord:
    id: int
    first_leaf: int
    end_leaf: int


def archive_list(conn: Connection) -> list[ArchiveRecord]:
    rows = conn.execute(select(archives).order_by(archives.c.end_leaf, archives.c.id))
    return [ArchiveRecord(r.id, r.first_leaf, r.end_leaf) for r in rows]


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
    with maintenance(engine, PURGED_TABLES) as conn:
        plan = plan_retention(conn, windows, now)
        if not any(plan.purge.values()) and not plan.drop_bodies and not plan.outbox:
            return PurgeResult(None, {}, 0)
        held = archive_list(conn)
        stones = [
            Tombstone(kind, i, "row", archive_of(held, plan.leaf_of[(kind, i)]))
            for kind in PURGE_ORDER
            for i in plan.purge[kind]
        ]
        stones += [
            Tombstone("delivery", d, "body", archive_of(held, plan.leaf_of[("delivery", d)]))
            for d in plan.drop_bodies
        ]
        removed = {TABLE_NAMES[k]: len(v) for k, v in plan.purge.items() if v}
        if plan.outbox:
            removed["outbox_events"] = len(plan.outbox)
        details = {
            "removed": removed,
            "raw_bodies_dropped": len(plan.drop_bodies),
            "archived_end": plan.archived_end,
            "windows_days": {
                "records": windows.records.days,
                "raw_bodies": windows.raw_bodies.days,
                "audit": windows.audit.days,
            },
        }
        event_id = file_tombstones(
            conn, stones, actor, "purge", ("ledger", "retention"), details, now
        )
        for kind in PURGE_ORDER:
            _delete(conn, kind, plan.purge[kind], progress)
        for chunk in chunks(plan.outbox):
            conn.execute(delete(outbox_states).where(outbox_states.c.outbox_id.in_(chunk)))
            conn.execute(delete(outbox_events).where(outbox_events.c.id.in_(chunk)))
            progress(len(chunk))
        for chunk in chunks(plan.drop_bodies):
            conn.execute(update(deliveries).where(deliveries.c.id.in_(chunk)).values(body_zlib=b""))
            progress(len(chunk))
    compact(engine, PURGED_TABLES)
    return PurgeResult(event_id, removed, len(plan.drop_bodies))


def _delete(conn: Connection, kind: str, ids: list[int], progress: Callable[[int], None]) -> None:
    target = TABLE_OF[kind]
    for chunk in chunks(ids):
        if kind == "push":
            conn.execute(delete(push_commits).where(push_commits.c.push_id.in_(chunk)))
        conn.execute(delete(target).where(target.c.id.in_(chunk)))
        progress(len(chunk))


def file_tombstones(
    conn: Connection,
    stones: list[Tombstone],
    actor: str,
    action: str,
    target: tuple[str, str],
    details: dict[str, object],
    now: datetime,
) -> int:
    """The audit event of a purge or erasure, committing to its tombstones, and the tombstones."""
    details = {**details, "tombstones": len(stones), "tombstones_sha256": tombstones_digest(stones)}
    event_id = _audit(conn, AuditEvent(actor, action, target[0], target[1], details, now))
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
    return event_id


def _audit(conn: Connection, event: AuditEvent) -> int:
    writer = SqlWriter(conn)
    event_id = writer.append_audit(event)
    writer.flush_log_queue()  # the event is a leaf like any other
    return event_id


def chunks(ids: Sequence[int] | Iterable[int]) -> Iterable[list[int]]:
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
    row = {
        "first_leaf": first_leaf,
        "end_leaf": end_leaf,
        "checkpoint_note": checkpoint_note,
        "manifest_sha256": manifest_sha256,
        "location": location,
        "created_at": now,
    }
    with translate_db_errors(), engine.connect() as conn:
        conn = conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            if archived_end(conn) != first_leaf:
                raise RetentionRefused(
                    "another archive was recorded while this one was written; archive again"
                )
            inserted = archives.insert().values(row).returning(archives.c.id)
            archive_id = int(conn.execute(inserted).scalar_one())
            details: dict[str, object] = {
                "first_leaf": first_leaf,
                "end_leaf": end_leaf,
                "manifest_sha256": manifest_sha256.hex(),
                "location": location,
                "entries": counts,
            }
            event = AuditEvent(actor, "archive", "archive", str(archive_id), details, now)
            _audit(conn, event)
    return archive_id
