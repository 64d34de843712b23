"""The group-committing writer: the work waiting at one moment, recorded in one transaction.

Each request hands its work (a function of the open transaction) to `GroupCommit.write` and
waits. The first in the queue leads: it takes everything queued by then, runs each piece in
its own SAVEPOINT (a piece that raises rolls back alone and gets its own answer), commits
once, and only then answers every piece of the batch and hands the lead to whoever queued
meanwhile. A request that finds a lane free leads at once, so nothing waits for company;
under load, the batch grows by itself while the previous one commits. SQLite has one lane
(one writer at a time anyway); PostgreSQL several, each batch on its own connection.

Writers of several processes (PostgreSQL) batch independently: each batch runs its pieces in
ascending order of their keys, so that batches take the same unique keys and repository
guards in one order, and a batch that still meets a deadlock or a serialization failure is
rolled back and run again whole.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

from sqlalchemy import exc as sa_exc

from labledger.storage.sql_writer import SqlWriter

T = TypeVar("T")
Work = Callable[[SqlWriter], T]

# A bound on one batch's work: the last piece of a batch waits for all before it.
MAX_BATCH = 64
# Buckets of the deliveries-per-commit histogram (http/metrics.py).
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, MAX_BATCH)
RETRIES = 8
# PostgreSQL's deadlock_detected and serialization_failure: the batch may simply run again.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})


class _Waiting(Generic[T]):
    __slots__ = ("batch", "done", "error", "key", "result", "woken", "work")

    def __init__(self, key: str, work: Work[T]) -> None:
        self.key = key
        self.work = work
        self.woken = threading.Event()
        self.done = False
        self.batch: list[_Waiting[Any]] = []  # the batch it leads, when it leads one
        self.result: T | None = None
        self.error: BaseException | None = None

    def answer(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class BatchSizes:
    """How many pieces of work each commit carried, counted in BATCH_BUCKETS."""

    def __init__(self) -> None:
        self.buckets = [0] * len(BATCH_BUCKETS)  # cumulative: pieces <= bound
        self.commits = 0
        self.pieces = 0

    def count(self, size: int) -> None:
        self.commits += 1
        self.pieces += size
        for i, bound in enumerate(BATCH_BUCKETS):
            if size <= bound:
                self.buckets[i] += 1


def retryable(exc: BaseException) -> bool:
    orig = getattr(exc, "orig", None)
    return isinstance(exc, sa_exc.DBAPIError) and (
        getattr(orig, "sqlstate", None) in RETRYABLE_SQLSTATES
    )


class GroupCommit:
    """One per store: `write` runs work in the next batch and answers after its commit.

    `transaction` opens the batch's transaction: BEGIN on entry, COMMIT on a clean exit.
    """

    def __init__(
        self, transaction: Callable[[], AbstractContextManager[SqlWriter]], lanes: int = 1
    ) -> None:
        """`lanes`: batches that may run at once (each on its own connection)."""
        self._transaction = transaction
        self._lanes = lanes
        self._running = 0  # batches running
        self._in_batches = 0  # pieces in them
        self._lock = threading.Lock()
        self._queue: deque[_Waiting[Any]] = deque()
        self.sizes = BatchSizes()
        self.retries = 0  # batches run again after a deadlock or serialization failure

    @property
    def waiting(self) -> int:
        """Pieces of work queued or running now."""
        with self._lock:
            return len(self._queue) + self._in_batches

    def write(self, key: str, work: Work[T]) -> T:
        """Run `work` atomically in the next batch; its result or exception once committed."""
        me: _Waiting[T] = _Waiting(key, work)
        with self._lock:
            self._queue.append(me)
            if self._running < self._lanes:
                self._running += 1
                self._lead(me)
        if not me.batch:
            me.woken.wait()
            if me.done:
                return me.answer()
        batch = me.batch
        try:
            self._run(batch)
        finally:
            with self._lock:
                self._in_batches -= len(batch)
                following = self._queue[0] if self._queue else None
                if following is None:
                    self._running -= 1
                else:
                    self._lead(following)
            for waiting in batch:
                waiting.done = True
                waiting.woken.set()
            if following is not None:
                following.woken.set()  # not done: it leads the next batch
        return me.answer()

    def _lead(self, leader: _Waiting[Any]) -> None:
        """Hand `leader` everything queued (it is first), up to MAX_BATCH; under the lock."""
        count = min(len(self._queue), MAX_BATCH)
        leader.batch = [self._queue.popleft() for _ in range(count)]
        self._in_batches += count

    def _run(self, batch: list[_Waiting[Any]]) -> None:
        ordered = sorted(batch, key=lambda w: w.key)
        for attempt in range(RETRIES):
            try:
                outcomes = self._commit(ordered)
            except BaseException as exc:
                if retryable(exc) and attempt + 1 < RETRIES:
                    with self._lock:
                        self.retries += 1
                    time.sleep(random.uniform(0, 0.002 * 2**attempt))
                    continue
                for waiting in batch:
                    waiting.error = exc
                return
            for waiting, (result, error) in zip(ordered, outcomes, strict=True):
                waiting.result, waiting.error = result, error
            with self._lock:
                self.sizes.count(len(batch))
            return

    def _commit(self, ordered: list[_Waiting[Any]]) -> list[tuple[Any, BaseException | None]]:
        """Run the batch in one transaction; each piece's outcome, valid once this returns."""
        outcomes: list[tuple[Any, BaseException | None]] = []
        with self._transaction() as tx:
            if len(ordered) == 1:
                # Alone, a piece needs no savepoint: if it raises, its transaction rolls back.
                outcomes.append((ordered[0].work(tx), None))
            else:
                for waiting in ordered:
                    outcomes.append(_in_savepoint(tx, waiting.work))
        return outcomes


def _in_savepoint(tx: SqlWriter, work: Work[T]) -> tuple[T | None, BaseException | None]:
    try:
        with tx.savepoint():
            return work(tx), None
    except sa_exc.OperationalError:
        raise  # the connection or the transaction failed, not this piece: so does the batch
    except Exception as exc:
        if retryable(exc):
            raise

        return None, exc
