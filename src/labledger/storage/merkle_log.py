"""The Merkle log in SQL: integrating queued entries, signed checkpoints, proofs.

Ingest only queues `(entry_type, entry_id)` in its own transaction; integration runs in
batches, elsewhere (the integrator of `serve`, or `labledger integrate`), in two steps:

1. in a read transaction, the queued entries' rows are read, their leaves hashed and the
   tree grown by them in memory: most of the work, and it blocks no writer;
2. in a write transaction, under a lock several server processes can share
   (`pg_try_advisory_xact_lock` on PostgreSQL, the write lock of `BEGIN IMMEDIATE` on SQLite),
   the entries and new tree nodes are stored and a checkpoint is signed, unless another
   integrator signed one since step 1, in which case this round gives way to the next.

Rows are append-only, so what step 1 read is still what step 2 logs. An entry is covered by a
checkpoint within one integration interval after its transaction commits (plus the batch's
own time).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from labledger.core.checkpoint import sign_checkpoint
from labledger.core.errors import NotYetLogged
from labledger.core.frontier import Node, append_leaves
from labledger.core.merkle import (
    HASH_SIZE,
    CompactRange,
    leaf_hash,
    prove_consistency,
    prove_inclusion,
)
from labledger.core.note import SignerKey
from labledger.core.receipt import Receipt
from labledger.storage.engine import (
    BRIEF_WAIT_OPTION,
    WRITE_OPTION,
    translate_db_errors,
    writer_lock,
)
from labledger.storage.leaf_rows import IN_CHUNK, entry_leaves
from labledger.storage.stored_subtrees import StoredSubtrees
from labledger.storage.tables import (
    checkpoints,
    log_entries,
    log_queue,
    merkle_nodes,
)

# Any constant works; it names "the integrator" among PostgreSQL advisory locks.
INTEGRATOR_LOCK = 0x4C41424C  # "LABL"
# Built once: building a statement per call made SQLAlchemy recompute its cache key each time.
_TRY_LOCK = select(func.pg_try_advisory_xact_lock(INTEGRATOR_LOCK))
_LATEST = select(checkpoints).order_by(checkpoints.c.tree_size.desc()).limit(1)
_INSERT_CHECKPOINT = checkpoints.insert()
_NEWEST_NOTE = (
    select(checkpoints.c.tree_size, checkpoints.c.note)
    .order_by(checkpoints.c.tree_size.desc())
    .limit(1)
)


@dataclass(frozen=True, slots=True)
class LogBacklog:
    queued: int  # committed entries not yet in the tree
    tree_size: int  # of the newest checkpoint (0: none yet)
    signed_at: datetime | None  # the newest checkpoint's time


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
        self,
        signer: SignerKey,
        now: datetime | None = None,
        limit: int = 100_000,
        background: bool = False,
    ) -> StoredCheckpoint | None:
        """Move queued entries into the tree and sign a checkpoint; None when nothing was queued.

        A `background` round, which the next one follows, waits only briefly for SQLite's
        write lock when another process holds it (StoreUnavailable), so that this process's
        webhooks do not queue behind it for the whole busy timeout.

        The checkpoint's time is read once the lock is held (default: the clock) and is never
        earlier than the previous checkpoint's, so signed times only move forward even when
        several processes queue up for the lock.
        """
        with translate_db_errors(), self.engine.connect() as conn:
            with conn.begin():
                if not _take_integrator_lock(conn):
                    return None  # another integrator is at work: skip the read as well
                batch = _read_batch(conn, limit)
            if batch is None:
                return None
            conn = conn.execution_options(**{WRITE_OPTION: True, BRIEF_WAIT_OPTION: background})
            with writer_lock(self.engine), conn.begin():
                if not _take_integrator_lock(conn):
                    return None
                return _append_batch(conn, signer, now, batch)

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        with self._reading() as conn:
            row = conn.execute(_LATEST).one_or_none()
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
            return _entry(conn, kind, entry_id)

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        with self._reading() as conn:
            return StoredSubtrees(conn).prove(lambda read: prove_inclusion(read, index, tree_size))

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        with self._reading() as conn:
            return StoredSubtrees(conn).prove(
                lambda read: prove_consistency(read, old_size, new_size)
            )

    def receipt(self, kind: str, entry_id: int) -> Receipt:
        """Leaf bytes, inclusion proof and newest checkpoint for one entry, in one transaction."""
        with self._reading() as conn:
            found = _entry(conn, kind, entry_id)
            latest = conn.execute(_NEWEST_NOTE).all()
            if not found or not latest or found[0].leaf_index >= latest[0][0]:
                raise NotYetLogged(kind, entry_id)
            (entry, data), (size, note) = found, latest[0]
            proof = StoredSubtrees(conn).prove(
                lambda read: prove_inclusion(read, entry.leaf_index, size)
            )
        return Receipt(entry.leaf_index, size, data, tuple(proof), note)

    def backlog(self) -> LogBacklog:
        """How far integration lags: entries waiting, and the newest checkpoint."""
        with self._reading() as conn:
            queued = conn.execute(select(func.count()).select_from(log_queue)).scalar_one()
            latest = conn.execute(_LATEST).one_or_none()
        if latest is None:
            return LogBacklog(int(queued), 0, None)
        return LogBacklog(int(queued), latest.tree_size, latest.created_at)


def _take_integrator_lock(conn: Connection) -> bool:
    if conn.dialect.name != "postgresql":
        return True  # BEGIN IMMEDIATE already holds SQLite's single write lock
    return bool(conn.execute(_TRY_LOCK).scalar_one())


@dataclass(frozen=True, slots=True)
class _Batch:
    """Queued entries, their leaf hashes and the tree they grow, worked out while no lock was
    held: the write step only stores them, so writers wait on it for as short a time as can be."""

    base_size: int  # the tree size they were read against
    entries: list[tuple[int, str, int, bytes]]  # (leaf index, entry type, entry id, leaf hash)
    queue_ids: list[int]
    frontier: CompactRange  # the tree with them
    nodes: list[Node]  # the subtrees they complete


def _read_batch(conn: Connection, limit: int) -> _Batch | None:
    queued = conn.execute(
        select(log_queue.c.id, log_queue.c.entry_type, log_queue.c.entry_id)
        .order_by(log_queue.c.id)
        .limit(limit)
    ).all()
    if not queued:
        return None
    latest = conn.execute(_LATEST).one_or_none()
    base = checkpoint_from_row(latest).frontier if latest else CompactRange()
    hashes = _leaf_hashes(conn, [(kind, entry_id) for _, kind, entry_id in queued])
    frontier, nodes = append_leaves(base, hashes)
    entries = [
        (base.size + i, kind, entry_id, h)
        for i, ((_, kind, entry_id), h) in enumerate(zip(queued, hashes, strict=True))
    ]
    return _Batch(base.size, entries, [q[0] for q in queued], frontier, nodes)


def _leaf_hashes(conn: Connection, keys: list[tuple[str, int]]) -> list[bytes]:
    """The leaf hash of each queued entry, from its row, as `verify` hashes it."""
    by_kind: dict[str, list[int]] = {}
    for kind, entry_id in keys:
        by_kind.setdefault(kind, []).append(entry_id)
    hashes = {
        (kind, entry_id): leaf_hash(data)
        for kind, ids in by_kind.items()
        for entry_id, data in entry_leaves(conn, kind, ids).items()
    }
    missing = [key for key in keys if key not in hashes]
    if missing:
        raise RuntimeError(f"queued entries without rows: {missing[:5]}")
    return [hashes[key] for key in keys]


def _append_batch(
    conn: Connection, signer: SignerKey, now: datetime | None, batch: _Batch
) -> StoredCheckpoint | None:
    latest = conn.execute(_LATEST).one_or_none()
    if (latest.tree_size if latest else 0) != batch.base_size:
        return None  # another integrator logged entries since the read; the next round goes on
    # tree_size is the checkpoints' key: the same size is the same checkpoint, so the batch's
    # frontier grew from the one signed there.
    now = now or datetime.now(UTC)
    if latest is not None:
        now = max(now, latest.created_at)
    conn.execute(
        log_entries.insert(),
        [
            {"leaf_index": i, "entry_type": t, "entry_id": e, "leaf_hash": h, "integrated_at": now}
            for i, t, e, h in batch.entries
        ],
    )
    if batch.nodes:
        conn.execute(
            merkle_nodes.insert(),
            [{"level": n.level, "node_index": n.index, "hash": n.hash} for n in batch.nodes],
        )
    # The queue loses each integrated id exactly: a writer whose transaction took a lower id
    # may commit after this batch was read, so "up to the last id" could drop its entry.
    for at in range(0, len(batch.queue_ids), IN_CHUNK):
        conn.execute(
            log_queue.delete().where(log_queue.c.id.in_(batch.queue_ids[at : at + IN_CHUNK]))
        )
    return _sign(conn, signer, batch.frontier, now)


def _entry(conn: Connection, kind: str, entry_id: int) -> tuple[LogEntry, bytes] | None:
    logged = conn.execute(
        select(log_entries.c.leaf_index, log_entries.c.leaf_hash).where(
            log_entries.c.entry_type == kind, log_entries.c.entry_id == entry_id
        )
    ).one_or_none()
    data = entry_leaves(conn, kind, [entry_id]).get(entry_id) if logged else None
    if logged is None or data is None:
        return None
    return LogEntry(logged.leaf_index, kind, entry_id, bytes(logged.leaf_hash)), data


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
        _INSERT_CHECKPOINT,
        {
            "tree_size": frontier.size,
            "root_hash": root,
            "frontier": b"".join(frontier.hashes),
            "note": note,
            "created_at": now,
        },
    )
    return StoredCheckpoint(frontier.size, root, frontier, note, now)
