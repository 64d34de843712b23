"""Worker processes that check chunks of the log (storage/verify_chunks.py) side by side.

They are forked before the verifying transaction begins, so that no SQLite lock is held
across the fork (forking also spares each worker importing the application again); each
opens its own connection at its first chunk. On PostgreSQL every worker imports the
verifying transaction's exported snapshot, so all of them see one state of the database. On
SQLite a worker's read transaction starts at its first chunk, at or after the verifying
transaction's; a chunk that does not check out there is checked again, entry by entry, in
the verifying transaction itself, so the report describes one state of the database.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import re
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Dialect, Engine

from labledger.core.verify_chunks import CheckedChunk
from labledger.storage.leaf_columns import driver_fetch
from labledger.storage.verify_chunks import ChunkJob, check_chunk

_SNAPSHOT = re.compile(r"[0-9A-Fa-f]+-[0-9A-Fa-f]+-[0-9]+")

# In a worker process: the dialect and URL it was forked with, the job the verifying
# transaction sends once it has read the checkpoints and tombstones, the connection it opens.
_worker: dict[str, Any] = {}


def _start_worker(dialect: Dialect, url: Any, inbox: Any) -> None:
    _worker.update(dialect=dialect, url=url, inbox=inbox, job=None, connection=None)


def _connect(snapshot: str | None) -> Any:
    dialect: Dialect = _worker["dialect"]
    args, kwargs = dialect.create_connect_args(_worker["url"])
    raw = dialect.loaded_dbapi.connect(*args, **kwargs)
    if dialect.name == "sqlite":
        raw.isolation_level = None
        raw.execute("BEGIN")  # one read transaction for all of this worker's chunks
        return raw
    raw.autocommit = True  # the transaction below is begun by hand, as the snapshot needs
    raw.execute("SET TIME ZONE 'UTC'")  # times come back in UTC, as the leaves write them
    raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    if snapshot is not None:
        raw.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
    return raw


def _check_in_worker(chunk: tuple[int, int]) -> CheckedChunk | None:
    if _worker["job"] is None:
        *shared, snapshot = _worker["inbox"].get()
        _worker["job"] = ChunkJob(_worker["dialect"], *shared)
        _worker["connection"] = _connect(snapshot)
    return check_chunk(driver_fetch(_worker["connection"]), _worker["job"], *chunk)


class ChunkWorkers:
    """Worker processes checking chunks, forked before the verifying transaction begins
    (`check` then hands them the job that transaction read)."""

    def __init__(self, engine: Engine, processes: int) -> None:
        context = multiprocessing.get_context("fork")
        self._inbox = context.SimpleQueue()
        self._processes = processes
        self._pool = context.Pool(
            processes, _start_worker, (engine.dialect, engine.url, self._inbox)
        )

    def check(
        self, job: ChunkJob, chunks: list[tuple[int, int]], snapshot: str | None
    ) -> Iterator[CheckedChunk | None]:
        if snapshot is not None and not _SNAPSHOT.fullmatch(snapshot):
            raise ValueError(f"unexpected snapshot id {snapshot!r}")
        # every field but the dialect, which each worker was forked with
        shared = tuple(getattr(job, f.name) for f in dataclasses.fields(job)[1:])
        for _ in range(self._processes):
            self._inbox.put((*shared, snapshot))
        return self._pool.imap(_check_in_worker, chunks)

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()
