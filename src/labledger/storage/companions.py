"""The audit events the API writes with a row, in the same transaction: a row the
application's database role appended by hand has none (storage/evidence_check.py asks)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from sqlalchemy import Connection, select

from labledger.core.evidence import Row, companion_mismatch
from labledger.core.verify import Limitation, Problem, VerifyReport
from labledger.storage.leaf_rows import Unreadable, all_entry_rows
from labledger.storage.tables import log_entries, tombstones

# Each companion audit event, found by what it names: (action, the detail or column naming it).
COMPANIONS = {
    "session": ("session.created", "target_id"),
    "session_change": ("session.deadline_changed", "details.change_id"),
    "push": ("delivery.recorded", "details.push_id"),
}
TABLES = {"session": "lab_sessions", "session_change": "session_changes", "push": "pushes"}
Companions = dict[tuple[str, str], Row]


def readable(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Rows the leaf check can vouch for: one holding a value labledger never writes is
    reported there (as leaf_mismatch), and nothing can be derived from it here."""
    for row in rows:
        if not any(isinstance(v, Unreadable) for v in row.values()):
            yield row


def companions_of(conn: Connection) -> Companions:
    """The audit events that accompany a row written through the API, by what they name."""
    wanted = {action: key for action, key in COMPANIONS.values()}
    found: Companions = {}
    for audit in readable(all_entry_rows(conn, "audit")):
        key = wanted.get(audit["action"])
        if key is None:
            continue
        details = audit["details"] if isinstance(audit["details"], Mapping) else {}
        named = details.get(key[8:]) if key.startswith("details.") else audit[key]
        found.setdefault((audit["action"], str(named)), audit)
    return found


def newest_purged_audit_leaf(conn: Connection) -> int:
    """The leaf of the newest audit event retention purged (-1: none): a companion older than
    that may be gone on purpose."""
    newest = conn.execute(
        select(log_entries.c.leaf_index)
        .join(
            tombstones,
            (tombstones.c.entry_type == "audit")
            & (tombstones.c.entry_id == log_entries.c.entry_id)
            & (tombstones.c.what == "row"),
        )
        .where(log_entries.c.entry_type == "audit")
        .order_by(log_entries.c.leaf_index.desc())
        .limit(1)
    ).scalar()
    return -1 if newest is None else int(newest)


def check_companion(
    conn: Connection,
    report: VerifyReport,
    kind: str,
    row: Row,
    expected: Mapping[str, Any],
    companions: Companions,
    purged_before: int,
) -> None:
    action, _key = COMPANIONS[kind]
    wrong = companion_mismatch(expected, companions.get((action, str(row["id"]))))
    if not wrong:
        return
    table = TABLES[kind]
    if wrong == ("audit",) and _leaf_of(conn, kind, row["id"]) < purged_before:
        report.limitations.append(
            Limitation(
                "companion_purged",
                f"{table} {row['id']}: its {action} audit event "
                "may be among those retention purged",
                1,
            )
        )
        return
    report.problems.append(
        Problem(
            f"{kind}_unaudited",
            f"{table} {row['id']} lacks the {action} audit event the API writes with it "
            "(appended behind labledger's back?)",
            table=table,
            entry_id=row["id"],
            expected=action,
            actual="none" if wrong == ("audit",) else "differs in " + ", ".join(wrong),
        )
    )


def _leaf_of(conn: Connection, kind: str, entry_id: int) -> int:
    found = conn.execute(
        select(log_entries.c.leaf_index).where(
            log_entries.c.entry_type == kind, log_entries.c.entry_id == entry_id
        )
    ).scalar()
    return 1 << 62 if found is None else int(found)  # not logged yet: newer than any
