"""The integrator's SQL: the leaf hashes of queued entries, read from their rows, and the
statements that store a batch (storage/merkle_log.py runs them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Dialect

from labledger.core.frontier import Node
from labledger.core.leaf_batches import leaf_hashes_columns
from labledger.storage.engine import translate_driver_errors
from labledger.storage.leaf_columns import driver_fetch, kind_plan
from labledger.storage.leaf_rows import ARRAY_CHUNK, IN_CHUNK
from labledger.storage.tables import log_entries, merkle_nodes

# PostgreSQL takes each insert and delete as one statement over arrays (`unnest`, `= ANY`).
_PG_INSERT_ENTRIES = (
    "INSERT INTO log_entries (leaf_index, entry_type, entry_id, leaf_hash, integrated_at) "
    "SELECT u.i, u.t, u.e, u.h, %s FROM "
    "unnest(%s::bigint[], %s::text[], %s::bigint[], %s::bytea[]) AS u(i, t, e, h)"
)
_PG_INSERT_NODES = (
    "INSERT INTO merkle_nodes (level, node_index, hash) "
    "SELECT * FROM unnest(%s::int[], %s::bigint[], %s::bytea[])"
)
_PG_DELETE_QUEUED = "DELETE FROM log_queue WHERE id = ANY(%s)"


@dataclass(frozen=True, slots=True)
class IntegratorSql:
    """The integrator's statements in the driver's own parameter style, written once.

    PostgreSQL stores a batch in a round trip per table instead of one per row. SQLite takes
    many rows per statement (`VALUES (...), (...)`, `IN (...)`): its driver lets go of the GIL
    around every step of a statement, so inserting row by row (`executemany`) would wait to
    take it back once a row, behind the web worker's threads, while this process's writers
    wait for the write lock.
    """

    queued: str
    bind_time: Callable[[datetime], Any]
    arrays: bool

    @staticmethod
    def _build(dialect: Dialect) -> IntegratorSql:
        bind = log_entries.c.integrated_at.type.dialect_impl(dialect).bind_processor(dialect)
        queued = "SELECT id, entry_type, entry_id FROM log_queue ORDER BY id LIMIT"
        arrays = dialect.name == "postgresql"
        return IntegratorSql(
            f"{queued} %s" if arrays else f"{queued} ?",
            bind or (lambda moment: moment),
            arrays,
        )

    @classmethod
    def of(cls, dialect: Dialect) -> IntegratorSql:
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
            run(_PG_INSERT_ENTRIES, (stamp, *map(list, zip(*entries, strict=True))))
            if nodes:
                columns = ([n.level for n in nodes], [n.index for n in nodes])
                run(_PG_INSERT_NODES, (*columns, [n.hash for n in nodes]))
            run(_PG_DELETE_QUEUED, (queue_ids,))
            return
        entry_columns = ("leaf_index", "entry_type", "entry_id", "leaf_hash")
        conn.execute(
            log_entries.insert(),
            [{**dict(zip(entry_columns, e, strict=True)), "integrated_at": now} for e in entries],
        )
        if nodes:
            conn.execute(
                merkle_nodes.insert(),
                [{"level": n.level, "node_index": n.index, "hash": n.hash} for n in nodes],
            )
        for start in range(0, len(queue_ids), IN_CHUNK):
            part = tuple(queue_ids[start : start + IN_CHUNK])
            run(f"DELETE FROM log_queue WHERE id IN ({', '.join('?' * len(part))})", part)


_INTEGRATOR_SQL: dict[tuple[str, str], IntegratorSql] = {}


def leaf_hashes(conn: Connection, keys: list[tuple[str, int]]) -> list[bytes]:
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
