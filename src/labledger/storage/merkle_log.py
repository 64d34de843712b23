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

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, func, select

from labledger.core.checkpoint import sign_checkpoint
from labledger.core.errors import LedgerError
from labledger.core.leaf_batches import leaf_hashes_columns
from labledger.core.log import Node, append_leaves
from labledger.core.merkle import (
    HASH_SIZE,
    CompactRange,
    prove_consistency,
    prove_inclusion,
)
from labledger.core.note import SignerKey
from labledger.core.receipt import Receipt
from labledger.storage.engine import (
    BRIEF_WAIT_OPTION,
    WRITE_OPTION,
    translate_db_errors,
    translate_driver_errors,
    writer_lock,
)
from labledger.storage.leaf_columns import driver_fetch, kind_plan
from labledger.storage.leaf_rows import ARRAY_CHUNK, IN_CHUNK, entry_leaves
from labledger.storage.stored_subtrees import StoredSubtrees
from labledger.storage.tables import (
    checkpoints,
    log_entries,
    log_queue,
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
# Built once: building a statement per call made SQLAlchemy recompute its cache key each time.
_TRY_LOCK = select(func.pg_try_advisory_xact_lock(INTEGRATOR_LOCK))
_LATEST = select(checkpoints).order_by(checkpoints.c.tree_size.desc()).limit(1)
_INSERT_CHECKPOINT = checkpoints.insert()
_NEWEST_NOTE = "SELECT tree_size, note FROM checkpoints ORDER BY tree_size DESC LIMIT 1"


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
            latest = _driver_rows(conn, _NEWEST_NOTE, ())
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
    # The per-entry work runs as once-written SQL in the driver's style: it shares the CPU
    # with request handling, and SQLAlchemy's per-row parameter processing used to cost as
    # much as hashing the leaves.
    sql = _IntegratorSql.of(conn.dialect)
    queued = _driver_rows(conn, sql.queued, (limit,))
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
    sql = _IntegratorSql.of(conn.dialect)
    sql.write(conn, batch.entries, now, batch.nodes, batch.queue_ids)
    return _sign(conn, signer, batch.frontier, now)


def _entry(conn: Connection, kind: str, entry_id: int) -> tuple[LogEntry, bytes] | None:
    p = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    logged = _driver_rows(
        conn,
        f"SELECT leaf_index, leaf_hash FROM log_entries WHERE entry_type = {p} AND entry_id = {p}",
        (kind, entry_id),
    )
    data = entry_leaves(conn, kind, [entry_id]).get(entry_id) if logged else None
    if data is None:
        return None
    index, leaf = logged[0]
    return LogEntry(index, kind, entry_id, bytes(leaf)), data


def _driver_rows(conn: Connection, sql: str, params: Sequence[Any]) -> list[Any]:
    return list(conn.exec_driver_sql(sql, tuple(params)).all())


@dataclass(frozen=True, slots=True)
class _IntegratorSql:
    """The integrator's statements in the driver's own parameter style, written once.

    PostgreSQL takes each insert and delete as one statement over arrays (`unnest`, `= ANY`),
    a round trip per table instead of one per row. SQLite takes many rows per statement
    (`VALUES (...), (...)`, `IN (...)`): its driver lets go of the GIL around every step of a
    statement, so inserting row by row (`executemany`) would wait to take it back once a row,
    behind the web worker's threads, while this process's writers wait for the write lock.
    """

    queued: str
    insert_entries: str
    insert_nodes: str
    delete_queued: str
    bind_time: Callable[[datetime], Any]
    arrays: bool

    @staticmethod
    def _build(dialect: Dialect) -> _IntegratorSql:
        bind = log_entries.c.integrated_at.type.dialect_impl(dialect).bind_processor(dialect)
        entries = (
            "INSERT INTO log_entries (leaf_index, entry_type, entry_id, leaf_hash, integrated_at)"
        )
        nodes = "INSERT INTO merkle_nodes (level, node_index, hash)"
        queued = "SELECT id, entry_type, entry_id FROM log_queue ORDER BY id LIMIT"
        if dialect.name == "postgresql":
            return _IntegratorSql(
                f"{queued} %s",
                f"{entries} SELECT u.i, u.t, u.e, u.h, %s FROM "
                "unnest(%s::bigint[], %s::text[], %s::bigint[], %s::bytea[]) AS u(i, t, e, h)",
                f"{nodes} SELECT * FROM unnest(%s::int[], %s::bigint[], %s::bytea[])",
                "DELETE FROM log_queue WHERE id = ANY(%s)",
                bind or (lambda moment: moment),
                arrays=True,
            )
        return _IntegratorSql(
            f"{queued} ?",
            f"{entries} VALUES",
            f"{nodes} VALUES",
            "DELETE FROM log_queue WHERE id IN",
            bind or (lambda moment: moment),
            arrays=False,
        )

    @classmethod
    def of(cls, dialect: Dialect) -> _IntegratorSql:
        # Once per kind of dialect, not per engine (tests and tools make many engines).
        key = (dialect.name, dialect.driver)
        if key not in _INTEGRATOR_SQL:
            _INTEGRATOR_SQL[key] = cls._build(dialect)
        return _INTEGRATOR_SQL[key]

    def write(
        self,
        conn: Connection,
        entries: list[tuple[int, str, int, bytes]],
        now: datetime,
        nodes: list[Node],
        queue_ids: list[int],
    ) -> None:
        # The queue loses each integrated id exactly: a writer whose transaction took a lower
        # id may commit after this batch was read, so "up to the last id" could drop its entry.
        stamp = self.bind_time(now)
        run = conn.exec_driver_sql
        if self.arrays:
            run(self.insert_entries, (stamp, *map(list, zip(*entries, strict=True))))
            if nodes:
                columns = ([n.level for n in nodes], [n.index for n in nodes])
                run(self.insert_nodes, (*columns, [n.hash for n in nodes]))
            run(self.delete_queued, (queue_ids,))
        else:
            _many_rows(conn, self.insert_entries, [(*e, stamp) for e in entries])
            _many_rows(conn, self.insert_nodes, [(n.level, n.index, n.hash) for n in nodes])
            _many_rows(conn, self.delete_queued, [(i,) for i in queue_ids], rows_as_list=True)


def _many_rows(
    conn: Connection, statement: str, rows: list[tuple[Any, ...]], rows_as_list: bool = False
) -> None:
    """`statement` followed by as many rows as one statement may bind: `(?, ?), (?, ?)`, or
    with `rows_as_list` one list, `(?, ?, ?)`. SQLite before 3.32 binds at most 999 values."""
    if not rows:
        return
    width = len(rows[0])
    per_statement = IN_CHUNK if rows_as_list else 999 // width
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        if rows_as_list:
            marks = f"({', '.join('?' * len(chunk))})"
        else:
            marks = ", ".join([f"({', '.join('?' * width)})"] * len(chunk))
        conn.exec_driver_sql(f"{statement} {marks}", tuple(chain.from_iterable(chunk)))


_INTEGRATOR_SQL: dict[tuple[str, str], _IntegratorSql] = {}


def _leaf_hashes(conn: Connection, keys: list[tuple[str, int]]) -> list[bytes]:
    """The leaf hash of each queued entry, from its row: the rows of a kind read column by
    column and hashed as `verify` hashes them (storage/leaf_columns.py)."""
    by_kind: dict[str, list[int]] = {}
    for kind, entry_id in keys:
        by_kind.setdefault(kind, []).append(entry_id)
    fetch = driver_fetch(conn.connection.driver_connection)
    hashes: dict[str, dict[int, bytes]] = {}
    with translate_driver_errors(conn.dialect):
        for kind, ids in by_kind.items():
            plan, hashes[kind] = kind_plan(conn.dialect, kind), {}
            step = ARRAY_CHUNK if plan.array else IN_CHUNK  # SQLite binds a bounded number
            for part in (ids[i : i + step] for i in range(0, len(ids), step)):
                found = plan.fetch(fetch, part, (min(part), max(part)))
                computed = leaf_hashes_columns(kind, found.columns, len(found.ids))
                hashes[kind].update(zip(found.ids, computed, strict=True))
    missing = [(k, i) for k, i in keys if i not in hashes[k]]
    if missing:
        raise RuntimeError(f"queued entries without rows: {missing[:5]}")
    return [hashes[kind][entry_id] for kind, entry_id in keys]


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
