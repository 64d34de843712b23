"""Erasure of one person's personal data, leaving the ledger verifiable (RETENTION.md).

Leaves never held names, e-mails or logins, only `personal_sha256 = SHA-256(salt || fields)`.
Erasure proves each row still matches its logged leaf, keeps that commitment in a `personal`
tombstone, and blanks the fields, the salt and the raw bodies, in one maintenance transaction
with its audit event; then the touched tables are compacted so no copy stays on disk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select, update

from labledger.core.errors import RetentionRefused
from labledger.core.leaves import LEAF_FIELDS, entry_leaf_hash, personal_commitment
from labledger.core.retention_rules import Tombstone
from labledger.storage.leaf_rows import UNREADABLE_ERRORS, entry_rows
from labledger.storage.maintenance import compact, maintenance
from labledger.storage.retention import TABLE_OF, chunks, file_tombstones
from labledger.storage.tables import (
    attempts,
    deliveries,
    lab_sessions,
    log_entries,
    pushes,
    tombstones,
)


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
        raise RetentionRefused("name exactly one of a subject id or a forge account")
    if not reason.strip():
        raise RetentionRefused("an erasure needs a reason (e.g. the request's reference)")
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
        target = (
            ("subject", str(subject_id))
            if account is None
            else ("forge_account", f"{account[0]}:{account[1]}")
        )
        details: dict[str, object] = {
            "reason": reason,
            "attempts": len(attempt_ids),
            "pushes": len(push_ids),
            "raw_bodies": len(delivery_ids),
        }
        event_id = file_tombstones(conn, stones, actor, "erase", target, details, now)
        for kind, ids in (("attempt", attempt_ids), ("push", push_ids)):
            table = TABLE_OF[kind]
            for chunk in chunks(ids):
                conn.execute(update(table).where(table.c.id.in_(chunk)).values(ERASED_VALUES[kind]))
        for chunk in chunks(delivery_ids):
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
                for chunk in chunks(push_ids)
                for a in conn.execute(
                    select(attempts.c.id).where(attempts.c.push_id.in_(chunk))
                ).scalars()
            }
        )
    delivery_ids = sorted(
        {
            d
            for chunk in chunks(push_ids)
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
        for chunk in chunks(delivery_ids)
        for d in conn.execute(
            select(deliveries.c.id).where(
                deliveries.c.id.in_(chunk), func.length(deliveries.c.body_zlib) > 0
            )
        ).scalars()
    )


def _commitments(conn: Connection, kind: str, ids: list[int]) -> list[Tombstone]:
    """The leaf's personal commitment of each row, once the row is proven to match its leaf."""
    logged = {}
    for chunk in chunks(ids):
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
        raise RetentionRefused(
            f"{len(waiting)} {kind} entries are not in the Merkle log yet; "
            "run `labledger integrate` and erase again"
        )
    rows = entry_rows(conn, kind, ids)
    personal = LEAF_FIELDS[kind][1]
    stones = []
    for entry_id in ids:
        row = rows[entry_id]
        if not _matches(kind, row, logged[entry_id]):
            raise RetentionRefused(
                f"{kind} {entry_id} no longer matches its logged leaf; erasing it would hide "
                "that: run `labledger verify` and resolve it first"
            )
        salt = bytes(row.get("personal_salt") or b"")
        commitment = personal_commitment(salt, {n: row[n] for n in personal})
        stones.append(Tombstone(kind, entry_id, "personal", None, commitment))
    return stones


def _matches(kind: str, row: dict[str, Any], logged: bytes) -> bool:
    """Whether the row still hashes to its logged leaf; one holding what no leaf can (a float
    in its JSON, stored behind labledger's back) does not."""
    try:
        return entry_leaf_hash(kind, row) == logged
    except UNREADABLE_ERRORS:
        return False
