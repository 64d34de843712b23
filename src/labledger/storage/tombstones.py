"""Reading tombstones: what purge and erasure took away, and whether the ledger vouches for it.

A tombstone is honoured by `verify` only when the audit event of its purge or erasure exists
and commits (in `tombstones_sha256`) to exactly the tombstones filed under it; that event is
itself a leaf of the Merkle log, so a tombstone forged later does not verify.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import Connection, select

from labledger.core.retention_rules import Tombstone, tombstones_digest
from labledger.core.verify import Problem, VerifyReport
from labledger.storage.tables import audit_events, tombstones

REMOVING_ACTIONS = ("purge", "erase")


@dataclass(slots=True)
class Removed:
    """What the ledger vouches was removed on purpose."""

    rows: set[tuple[str, int]] = field(default_factory=set)
    bodies: set[int] = field(default_factory=set)


def vouched_removals(conn: Connection, report: VerifyReport) -> Removed:
    """Check every tombstone against its audit event; report those the ledger does not vouch for."""
    groups: dict[int, list[Tombstone]] = defaultdict(list)
    for r in conn.execute(select(tombstones)):
        commitment = None if r.personal_sha256 is None else bytes(r.personal_sha256)
        groups[r.event_id].append(
            Tombstone(r.entry_type, r.entry_id, r.what, r.archive_id, commitment)
        )
    removed = Removed()
    if not groups:
        return removed
    events = {
        r.id: r
        for r in conn.execute(
            select(audit_events.c.id, audit_events.c.action, audit_events.c.details).where(
                audit_events.c.action.in_(REMOVING_ACTIONS)
            )
        )
    }
    for event_id, stones in sorted(groups.items()):
        event = events.get(event_id)
        details = event.details if event is not None else {}
        digest = tombstones_digest(stones)
        if event is None or details.get("tombstones_sha256") != digest:
            report.problems.append(
                Problem(
                    "tombstone",
                    f"tombstones filed under audit event {event_id} are not the ones its purge "
                    "or erasure recorded (removed or added behind labledger's back?)",
                    table="tombstones",
                    entry_id=event_id,
                    expected=str(details.get("tombstones_sha256")),
                    actual=digest,
                )
            )
            continue
        for t in stones:
            if t.what == "row":
                removed.rows.add((t.entry_type, t.entry_id))
            elif t.what == "body":
                removed.bodies.add(t.entry_id)
    return removed
