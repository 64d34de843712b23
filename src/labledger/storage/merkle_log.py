"""The Merkle log in SQL: integrating queued entries, signed checkpoints, proofs.

Ingest only queues `(entry_type, entry_id)` in its own transaction; integration runs in
batches, elsewhere (a background task of `serve`, or `labledger integrate`), under a lock that
several server processes can share: `pg_try_advisory_xact_lock` on PostgreSQL, the write lock
of `BEGIN IMMEDIATE` on SQLite. An entry is covered by a checkpoint within one integration
interval after its transaction commits (plus the batch's own time).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select

from labledger.core.checkpoint import sign_checkpoint
from labledger.core.errors import LedgerError
from labledger.core.leaves import entry_leaf_hash, leaf_bytes
from labledger.core.log import append_leaves
from labledger.core.merkle import (
    HASH_SIZE,
    CompactRange,
    node_hash,
    prove_consistency,
    prove_inclusion,
)
from labledger.core.note import SignerKey
from labledger.core.receipt import Receipt
from labledger.storage.engine import WRITE_OPTION
from labledger.storage.leaf_rows import entry_rows
from labledger.storage.sql_store import translate_db_errors
from labledger.storage.tables import (
    checkpoints,
    log_entries,
    log_queue,
    merkle_nodes,
)


class NotYetLogged(LedgerError):
    """The entry exists but no checkpoint covers it yet (or it does not exist)."""

    def __init__(self, kind: str, entry_id: int) -> None:
        self.kind = kind
        self.entry_id = entry_id
        super().__init__(
            f"{kind} {entry_id} is not covered by a signed checkpoint yet; "
            "retry in a few seconds (or run `labledger integrate`)"
        )


# Any constant works; it names "the integrator" among PostgreSQL advisory locks.
INTEGRATOR_LOCK = 0x4C41424C  # "LABL"
TIME_COLUMN = {
    "session": "created_at",
    "delivery": "received_at",
    "attempt": "received_at",
    "audit": "occurred_at",
    "verification": "reported_at",
    "session_change": "changed_at",
}


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    tree_size: int
    root_hash: bytes
    frontier: CompactRange
    note: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LogEntry:
    leaf_index: int
    entry_type: str
    entry_id: int
    leaf_hash: bytes


def checkpoint_from_row(row: Any) -> StoredCheckpoint:
    raw = bytes(row.frontier)
    hashes = [raw[i : i + HASH_SIZE] for i in range(0, len(raw), HASH_SIZE)]
    return StoredCheckpoint(
        row.tree_size,
        bytes(row.root_hash),
        CompactRange(row.tree_size, hashes),
        row.note,
        row.created_at,
    )


class SqlLog:
    """The log's operations on one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with translate_db_errors(), self.engine.connect() as conn, conn.begin():
            yield conn

    def integrate(
        self, signer: SignerKey, now: datetime | None = None, limit: int = 100_000
    ) -> StoredCheckpoint | None:
        """Move queued entries into the tree and sign a checkpoint; None when nothing was queued.

        The checkpoint's time is read once the lock is held (default: the clock) and is never
        earlier than the previous checkpoint's, so signed times only move forward even when
        several processes queue up for the lock.
        """
        with translate_db_errors(), self.engine.connect() as conn:
            conn = conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                if not _take_integrator_lock(conn):
                    return None
                return _integrate(conn, signer, now, limit)

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        with self._reading() as conn:
            row = conn.execute(
                select(checkpoints).order_by(checkpoints.c.tree_size.desc()).limit(1)
            ).one_or_none()
        return checkpoint_from_row(row) if row else None

    def checkpoints(self) -> list[StoredCheckpoint]:
        with self._reading() as conn:
            rows = conn.execute(select(checkpoints).order_by(checkpoints.c.tree_size))
            return [checkpoint_from_row(r) for r in rows]

    def checkpoint_at(self, size: int) -> StoredCheckpoint | None:
        with self._reading() as conn:
            row = conn.execute(
                select(checkpoints).where(checkpoints.c.tree_size == size)
            ).one_or_none()
        return checkpoint_from_row(row) if row else None

    def entry(self, kind: str, entry_id: int) -> tuple[LogEntry, bytes] | None:
        """The log entry of one ledger row and the row's canonical leaf bytes, once integrated."""
        with self._reading() as conn:
            row = conn.execute(
                select(log_entries).where(
                    log_entries.c.entry_type == kind, log_entries.c.entry_id == entry_id
                )
            ).one_or_none()
            if row is None:
                return None
            data = entry_rows(conn, kind, [entry_id])[entry_id]
        entry = LogEntry(row.leaf_index, row.entry_type, row.entry_id, bytes(row.leaf_hash))
        return entry, leaf_bytes(kind, data)

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        with self._reading() as conn:
            return prove_inclusion(_SubtreeReader(conn), index, tree_size)

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        with self._reading() as conn:
            return prove_consistency(_SubtreeReader(conn), old_size, new_size)

    def receipt(self, kind: str, entry_id: int) -> Receipt:
        """Leaf bytes, inclusion proof and newest checkpoint for one entry."""
        found = self.entry(kind, entry_id)
        latest = self.latest_checkpoint()
        if found is None or latest is None or found[0].leaf_index >= latest.tree_size:
            raise NotYetLogged(kind, entry_id)
        entry, data = found
        proof = self.inclusion_proof(entry.leaf_index, latest.tree_size)
        return Receipt(entry.leaf_index, latest.tree_size, data, tuple(proof), latest.note)

    def queued(self) -> int:
        with self._reading() as conn:
            return int(conn.execute(select(func.count()).select_from(log_queue)).scalar_one())


def _take_integrator_lock(conn: Connection) -> bool:
    if conn.dialect.name != "postgresql":
        return True  # BEGIN IMMEDIATE already holds SQLite's single write lock
    return bool(conn.execute(select(func.pg_try_advisory_xact_lock(INTEGRATOR_LOCK))).scalar_one())


def _integrate(
    conn: Connection, signer: SignerKey, now: datetime | None, limit: int
) -> StoredCheckpoint | None:
    queued = conn.execute(select(log_queue).order_by(log_queue.c.id).limit(limit)).all()
    if not queued:
        return None
    latest = conn.execute(
        select(checkpoints).order_by(checkpoints.c.tree_size.desc()).limit(1)
    ).one_or_none()
    frontier = checkpoint_from_row(latest).frontier if latest else CompactRange()
    now = now or datetime.now(UTC)
    if latest is not None:
        now = max(now, latest.created_at)
    hashes = _leaf_hashes(conn, [(q.entry_type, q.entry_id) for q in queued])
    start = frontier.size
    frontier, nodes = append_leaves(frontier, hashes)
    conn.execute(
        log_entries.insert(),
        [
            {
                "leaf_index": start + i,
                "entry_type": q.entry_type,
                "entry_id": q.entry_id,
                "leaf_hash": h,
                "integrated_at": now,
            }
            for i, (q, h) in enumerate(zip(queued, hashes, strict=True))
        ],
    )
    if nodes:
        conn.execute(
            merkle_nodes.insert(),
            [{"level": n.level, "node_index": n.index, "hash": n.hash} for n in nodes],
        )
    queue_ids = [q.id for q in queued]
    for i in range(0, len(queue_ids), 1000):
        conn.execute(delete(log_queue).where(log_queue.c.id.in_(queue_ids[i : i + 1000])))
    return _sign(conn, signer, frontier, now)


def _leaf_hashes(conn: Connection, keys: list[tuple[str, int]]) -> list[bytes]:
    by_kind: dict[str, list[int]] = {}
    for kind, entry_id in keys:
        by_kind.setdefault(kind, []).append(entry_id)
    rows = {kind: entry_rows(conn, kind, ids) for kind, ids in by_kind.items()}
    missing = [(k, i) for k, i in keys if i not in rows[k]]
    if missing:
        raise RuntimeError(f"queued entries without rows: {missing[:5]}")
    return [entry_leaf_hash(kind, rows[kind][entry_id]) for kind, entry_id in keys]


def checkpoint_extensions(now: datetime) -> list[str]:
    # Signed time of the checkpoint: entries later in the log cannot claim to be older.
    return [f"timestamp {int(now.timestamp())}"]


def _sign(
    conn: Connection, signer: SignerKey, frontier: CompactRange, now: datetime
) -> StoredCheckpoint:
    root = frontier.root()
    note = sign_checkpoint(
        signer.name,
        frontier.size,
        root,
        signer.private_key,
        signer.name,
        checkpoint_extensions(now),
    )
    conn.execute(
        checkpoints.insert().values(
            tree_size=frontier.size,
            root_hash=root,
            frontier=b"".join(frontier.hashes),
            note=note,
            created_at=now,
        )
    )
    return StoredCheckpoint(frontier.size, root, frontier, note, now)


class _SubtreeReader:
    """MTH(D[start:end]) from stored leaf hashes and completed nodes, O(log n) reads."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def __call__(self, start: int, end: int) -> bytes:
        width = end - start
        if width == 1:
            return bytes(
                self._conn.execute(
                    select(log_entries.c.leaf_hash).where(log_entries.c.leaf_index == start)
                ).scalar_one()
            )
        if width & (width - 1) == 0 and start % width == 0:
            level = width.bit_length() - 1
            return bytes(
                self._conn.execute(
                    select(merkle_nodes.c.hash).where(
                        merkle_nodes.c.level == level, merkle_nodes.c.node_index == start // width
                    )
                ).scalar_one()
            )
        k = 1 << ((width - 1).bit_length() - 1)
        return node_hash(self(start, start + k), self(start + k, end))
