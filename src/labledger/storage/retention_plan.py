"""What the retention policy may remove today (RETENTION.md), read from SQL.

A row is purgeable when its window has passed, an archive covers its leaf, and nothing that
stays refers to it: results before attempts, attempts before pushes, pushes before the
deliveries that carried them. Raw bodies past their (shorter) window are dropped from
deliveries whose records stay.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, select

from labledger.core.retention_rules import (
    MAINTENANCE_ACTIONS,
    Windows,
    counted_from,
    is_expired,
    session_close,
)
from labledger.storage.leaf_rows import ENTRY_TABLES
from labledger.storage.tables import (
    archives,
    attempts,
    audit_events,
    deliveries,
    lab_sessions,
    log_entries,
    outbox_events,
    outbox_states,
    pushes,
    session_changes,
    verification_results,
)

FINISHED_STATES = ("delivered", "dead")
TABLE_NAMES = {
    "verification": "verification_results",
    "attempt": "attempts",
    "push": "pushes",
    "delivery": "deliveries",
    "audit": "audit_events",
}


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
    outbox: list[int] = field(default_factory=list)  # finished notifications past the window


def archived_end(conn: Connection) -> int:
    value = conn.execute(select(func.max(archives.c.end_leaf))).scalar_one()
    return int(value or 0)


@dataclass(slots=True)
class _Judge:
    """Counts what is past its window and tells which of it an archive covers."""

    conn: Connection
    now: datetime
    plan: RetentionPlan
    _leaves: dict[str, dict[int, int]] = field(default_factory=dict)

    def expired(self, counted: datetime, window: timedelta) -> bool:
        return is_expired(counted, window, self.now)

    def archived(self, kind: str, entry_id: int) -> bool:
        if kind not in self._leaves:
            self._leaves[kind] = _leaf_indices(self.conn, kind)
        index = self._leaves[kind].get(entry_id)
        if index is not None:
            self.plan.leaf_of[(kind, entry_id)] = index
        return index is not None and index < self.plan.archived_end

    def count(self, table: TablePlan, kind: str, entry_id: int) -> bool:
        """An expired row: counted, and True when an archive covers it."""
        table.expired += 1
        if self.archived(kind, entry_id):
            return True
        table.waiting_for_archive += 1
        return False


@dataclass(slots=True)
class _Attempts:
    counted: dict[int, datetime] = field(default_factory=dict)  # id -> window start
    push_of: dict[int, int] = field(default_factory=dict)
    delivery_of: dict[int, int] = field(default_factory=dict)
    of_push: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    of_delivery: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))


def plan_retention(conn: Connection, windows: Windows, now: datetime) -> RetentionPlan:
    """What is past its window, what of it an archive covers, and what may go today."""
    plan = RetentionPlan(as_of=now, archived_end=archived_end(conn))
    judge = _Judge(conn, now, plan)
    facts = _attempt_facts(conn, _session_closes(conn))
    results, results_of = _plan_results(judge, windows, facts)
    chosen = {"verification": results}
    chosen["attempt"] = _plan_attempts(judge, windows, facts, results, results_of)
    delivered = _delivery_times(conn)
    push_from, chosen["push"] = _plan_pushes(judge, windows, facts, delivered, chosen["attempt"])
    chosen["delivery"] = _plan_deliveries(judge, windows, facts, delivered, push_from, chosen)
    chosen["audit"] = _plan_audit(judge, windows)
    if conn.dialect.name == "sqlite":
        _keep_newest(conn, chosen, facts, results_of, push_from)
    for kind, ids in chosen.items():
        plan.purge[kind] = sorted(ids)
        plan.tables[TABLE_NAMES[kind]].purgeable = len(ids)
    plan.raw_bodies.purgeable = len(plan.drop_bodies)
    plan.outbox = _plan_outbox(judge, windows)
    return plan


def _keep_newest(
    conn: Connection,
    chosen: dict[str, set[int]],
    facts: _Attempts,
    results_of: dict[int, list[int]],
    push_of: dict[int, tuple[int, datetime]],
) -> None:
    """SQLite gives a new row the largest id + 1, so deleting the row that holds the largest
    id would hand its id to the next row; an id must never name two entries (the log, the
    tombstones and every receipt key on it). On SQLite the newest row of each table stays,
    with the rows it refers to, until a newer row exists. (Audit events need no such care:
    the purge's own audit event is newer than any it removes.)"""
    newest: dict[str, int] = {
        kind: conn.execute(select(func.max(ENTRY_TABLES[kind].c.id))).scalar() or 0
        for kind in ("verification", "attempt", "push", "delivery")
    }
    attempt_of = {r: a for a, results in results_of.items() for r in results}
    keep_attempts = {newest["attempt"], attempt_of.get(newest["verification"], 0)}
    keep_pushes = {newest["push"], *(facts.push_of.get(a, 0) for a in keep_attempts)}
    delivery_of_push = {p: d for d, (p, _) in push_of.items()}
    keep_deliveries = {
        newest["delivery"],
        *(delivery_of_push.get(p, 0) for p in keep_pushes),
        *(facts.delivery_of.get(a, 0) for a in keep_attempts),
    }
    chosen["verification"].discard(newest["verification"])
    chosen["attempt"] -= keep_attempts
    chosen["push"] -= keep_pushes
    chosen["delivery"] -= keep_deliveries


def _leaf_indices(conn: Connection, kind: str) -> dict[int, int]:
    rows = conn.execute(
        select(log_entries.c.entry_id, log_entries.c.leaf_index).where(
            log_entries.c.entry_type == kind
        )
    )
    return {r.entry_id: r.leaf_index for r in rows}


def _session_closes(conn: Connection) -> dict[int, datetime | None]:
    """Each session's close, after its newest deadline change."""
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


def _attempt_facts(conn: Connection, closes: dict[int, datetime | None]) -> _Attempts:
    facts = _Attempts()
    query = select(
        attempts.c.id,
        attempts.c.session_id,
        attempts.c.push_id,
        attempts.c.delivery_pk,
        attempts.c.received_at,
    )
    for r in conn.execute(query):
        facts.counted[r.id] = counted_from(closes.get(r.session_id), r.received_at)
        facts.of_push[r.push_id].append(r.id)
        facts.of_delivery[r.delivery_pk].append(r.id)
        facts.push_of[r.id] = r.push_id
        facts.delivery_of[r.id] = r.delivery_pk
    return facts


def _plan_results(
    judge: _Judge, windows: Windows, facts: _Attempts
) -> tuple[set[int], dict[int, list[int]]]:
    """Results count from their attempt's window start, or their own time if later."""
    table = judge.plan.tables["verification_results"] = TablePlan()
    chosen: set[int] = set()
    results_of: dict[int, list[int]] = defaultdict(list)
    query = select(
        verification_results.c.id,
        verification_results.c.attempt_id,
        verification_results.c.reported_at,
    )
    for r in judge.conn.execute(query):
        results_of[r.attempt_id].append(r.id)
        counted = max(facts.counted.get(r.attempt_id, r.reported_at), r.reported_at)
        if judge.expired(counted, windows.records) and judge.count(table, "verification", r.id):
            chosen.add(r.id)
    return chosen, results_of


def _plan_attempts(
    judge: _Judge,
    windows: Windows,
    facts: _Attempts,
    results: set[int],
    results_of: dict[int, list[int]],
) -> set[int]:
    table = judge.plan.tables["attempts"] = TablePlan()
    chosen: set[int] = set()
    for attempt_id, counted in facts.counted.items():
        if not judge.expired(counted, windows.records):
            continue
        if judge.count(table, "attempt", attempt_id) and all(
            v in results for v in results_of.get(attempt_id, ())
        ):
            chosen.add(attempt_id)
    return chosen


def _delivery_times(conn: Connection) -> dict[int, Any]:
    query = select(
        deliveries.c.id,
        deliveries.c.received_at,
        (func.length(deliveries.c.body_zlib) > 0).label("has_body"),
    )
    return {r.id: r for r in conn.execute(query)}


def _plan_pushes(
    judge: _Judge,
    windows: Windows,
    facts: _Attempts,
    delivered: dict[int, Any],
    gone: set[int],
) -> tuple[dict[int, tuple[int, datetime]], set[int]]:
    """Pushes count from the latest of their attempts; returns delivery -> (push, start)."""
    table = judge.plan.tables["pushes"] = TablePlan()
    by_delivery: dict[int, tuple[int, datetime]] = {}
    chosen: set[int] = set()
    for r in judge.conn.execute(select(pushes.c.id, pushes.c.delivery_pk)):
        carried = facts.of_push.get(r.id, [])
        counted = max([delivered[r.delivery_pk].received_at, *(facts.counted[a] for a in carried)])
        by_delivery[r.delivery_pk] = (r.id, counted)
        if not judge.expired(counted, windows.records):
            continue
        if judge.count(table, "push", r.id) and all(a in gone for a in carried):
            chosen.add(r.id)
    return by_delivery, chosen


def _plan_deliveries(
    judge: _Judge,
    windows: Windows,
    facts: _Attempts,
    delivered: dict[int, Any],
    push_of: dict[int, tuple[int, datetime]],
    chosen: dict[str, set[int]],
) -> set[int]:
    """Deliveries go with their push; a kept delivery may still lose its raw body."""
    table = judge.plan.tables["deliveries"] = TablePlan()
    bodies = judge.plan.raw_bodies
    purged: set[int] = set()
    for delivery_id, r in delivered.items():
        push_id, push_counted = push_of.get(delivery_id, (None, r.received_at))
        carried = facts.of_delivery.get(delivery_id, [])
        counted = max([r.received_at, push_counted, *(facts.counted[a] for a in carried)])
        if judge.expired(counted, windows.records) and judge.count(table, "delivery", delivery_id):
            free = push_id is None or push_id in chosen["push"]
            if free and all(a in chosen["attempt"] for a in carried):
                purged.add(delivery_id)
                continue
        dropped = r.has_body and judge.expired(counted, windows.raw_bodies)
        if dropped and judge.count(bodies, "delivery", delivery_id):
            judge.plan.drop_bodies.append(delivery_id)
    return purged


def _plan_audit(judge: _Judge, windows: Windows) -> set[int]:
    """Audit events count from their own time; maintenance events are kept for good."""
    table = judge.plan.tables["audit_events"] = TablePlan()
    query = select(audit_events.c.id, audit_events.c.occurred_at).where(
        audit_events.c.action.not_in(MAINTENANCE_ACTIONS)
    )
    return {
        r.id
        for r in judge.conn.execute(query)
        if judge.expired(r.occurred_at, windows.audit) and judge.count(table, "audit", r.id)
    }


def _plan_outbox(judge: _Judge, windows: Windows) -> list[int]:
    """Notifications are work, not ledger: once delivered or dead, they go with the records'
    window, counted from their creation. No archive needed (the entries they announce are in
    the log); a notification still waiting for delivery is kept."""
    table = judge.plan.tables["outbox_events"] = TablePlan()
    newest = (
        select(outbox_states.c.outbox_id, func.max(outbox_states.c.id).label("state_id"))
        .group_by(outbox_states.c.outbox_id)
        .subquery()
    )
    query = (
        select(outbox_events.c.id, outbox_events.c.created_at, outbox_states.c.state)
        .select_from(outbox_events)
        .outerjoin(newest, newest.c.outbox_id == outbox_events.c.id)
        .outerjoin(outbox_states, outbox_states.c.id == newest.c.state_id)
    )
    chosen = set()
    for r in judge.conn.execute(query):
        if judge.expired(r.created_at, windows.records):
            table.expired += 1
            if r.state in FINISHED_STATES:
                chosen.add(r.id)
    if judge.conn.dialect.name == "sqlite":  # as in _keep_newest: SQLite would reuse the ids
        chosen.discard(judge.conn.execute(select(func.max(outbox_events.c.id))).scalar())
        newest_state = select(outbox_states.c.outbox_id).order_by(outbox_states.c.id.desc())
        chosen.discard(judge.conn.execute(newest_state.limit(1)).scalar())
    table.purgeable = len(chosen)
    return sorted(chosen)
