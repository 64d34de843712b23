"""Retention rules (issue 7, RETENTION.md): when data may go, and how its going is recorded.

Windows count from a session's close: its effective `closes_at` (after deadline changes),
else its effective `due_at`; an entry recorded after that, or of a session with neither,
counts from its own recorded time. What a purge or an erasure removes is listed in
tombstones, and the audit event of the purge or erasure commits to that list through
`tombstones_digest`, so a tombstone added behind labledger's back does not verify.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

# Audit actions that justify tombstones: kept for as long as the ledger exists.
MAINTENANCE_ACTIONS = ("archive", "purge", "erase")
TOMBSTONE_KINDS = ("row", "body", "personal")


@dataclass(frozen=True, slots=True)
class Windows:
    records: timedelta  # attempts, pushes, deliveries' parsed records, verification results
    raw_bodies: timedelta  # the raw webhook body; the record and the body's hash stay
    audit: timedelta  # audit events, except the maintenance actions above

    @classmethod
    def of_days(cls, records: int, raw_bodies: int, audit: int) -> Windows:
        return cls(timedelta(days=records), timedelta(days=raw_bodies), timedelta(days=audit))


@dataclass(frozen=True, slots=True)
class Tombstone:
    entry_type: str
    entry_id: int
    what: str  # one of TOMBSTONE_KINDS
    archive_id: int | None = None
    personal_sha256: bytes | None = None

    def line(self) -> str:
        archive = "-" if self.archive_id is None else str(self.archive_id)
        commitment = "-" if self.personal_sha256 is None else self.personal_sha256.hex()
        return f"{self.entry_type} {self.entry_id} {self.what} {archive} {commitment}\n"


def tombstones_digest(tombstones: Iterable[Tombstone]) -> str:
    """SHA-256 over the sorted tombstone lines, as lowercase hex."""
    digest = hashlib.sha256()
    for line in sorted(t.line() for t in tombstones):
        digest.update(line.encode("utf-8"))
    return digest.hexdigest()


def session_close(due_at: datetime | None, closes_at: datetime | None) -> datetime | None:
    """The moment a session's windows start counting from (effective values)."""
    return closes_at if closes_at is not None else due_at


def counted_from(close: datetime | None, recorded_at: datetime) -> datetime:
    return recorded_at if close is None or close < recorded_at else close


def is_expired(counted: datetime, window: timedelta, now: datetime) -> bool:
    return counted + window <= now
