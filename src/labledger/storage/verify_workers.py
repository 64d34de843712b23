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
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Dialect, Engine

from labledger.core.checkpoint import Checkpoint
from labledger.core.note import VerifierKey
from labledger.core.verify import open_notes
from labledger.core.verify_chunks import CheckedChunk
from labledger.storage.leaf_columns import driver_fetch
from labledger.storage.verify_chunks import ChunkJob, check_chunk

_SNAPSHOT = re.compile(r"[0-9A-Fa-f]+-[0-9A-Fa-f]+-[0-9]+")
NOTES_WORTH_SHARING = 1024

# In a worker process: the dialect and URL it was forked with, the job the verifying
# transaction sends once it has read the checkpoints and tombstones, the connection it opens.
_worker: dict[str, Any] = {}


def _start_worker(dialect: Dialect, url: Any, inbox: Any) -> None:
    # A fork keeps the parent's signal handlers. `ChunkWorkers.close` stops the workers with
    # SIGTERM, so a handler that does not exit (uvicorn's sets a flag; a tool's may raise
    # inside the pool's queue lock) would leave `verify` waiting for them for ever.
    # Ctrl-C reaches the whole process group: the verifying process handles it, not these.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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
    raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    if snapshot is not None:
        raw.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
    return raw


@contextmanager
def _sigterm_default() -> Iterator[None]:
    """SIGTERM's default action while the workers are forked, so that each can be stopped
    from its first instant (before `_start_worker` runs). Only the main thread may change a
    handler; forked from another thread, a worker relies on `_start_worker` alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
        with _sigterm_default():
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

    def open_notes(self, notes: list[tuple[str, str]], key: VerifierKey) -> list[Checkpoint | str]:
        """open_notes, shared out among the workers when there are enough notes to be worth
        it: a ledger logged a round a second while pushes trickle in holds one a round, and
        each signature costs about 0.1 ms to check."""
        if len(notes) < NOTES_WORTH_SHARING:
            return open_notes(notes, key)
        step = -(-len(notes) // (4 * self._processes))
        parts = [(notes[i : i + step], key) for i in range(0, len(notes), step)]
        return [cp for part in self._pool.starmap(open_notes, parts) for cp in part]

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()
