"""The load generator: closed loops at fixed concurrency and an open loop at a fixed rate.

Every request is prepared (and signed) before a phase starts. Latency is measured from the
moment a request was *due*: in the open loop that is its scheduled send time, so a server that
falls behind is charged for the queue it builds (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from bench.wire import Connection, ProtocolError

REQUEST_TIMEOUT_S = 30.0
FAILED = 0  # the status recorded for a connection error or a time-out
WIRE_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ProtocolError)


@dataclass(frozen=True, slots=True)
class WireRequest:
    raw: bytes
    attempts: int = 0  # attempts a 2xx answer records (0 for reads)


@dataclass(slots=True)
class Phase:
    """What one phase saw. Latencies and throughput cover the measured window only;
    statuses, `sent` and the generator's CPU cover the whole phase, warm-up included."""

    window: tuple[float, float]
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    ok: int = 0
    attempts: int = 0
    sent: int = 0
    last_end: float = 0.0
    generator_cpu_s: float = 0.0

    def record(self, due: float, end: float, status: int, attempts: int) -> None:
        self.sent += 1
        self.statuses[status] += 1
        low, high = self.window
        if low <= end <= high:
            self.latencies.append(end - due)
            self.last_end = max(self.last_end, end)
            if 200 <= status < 300:
                self.ok += 1
                self.attempts += attempts

    @property
    def window_s(self) -> float:
        return max(min(self.window[1], self.last_end) - self.window[0], 1e-9)


async def _timed(connection: Connection, request: WireRequest, due: float, phase: Phase) -> None:
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            status, _ = await connection.exchange(request.raw)
    except (*WIRE_ERRORS, TimeoutError):
        status = FAILED
    phase.record(due, time.perf_counter(), status, request.attempts)


async def closed_loop(
    port: int, requests: Sequence[WireRequest], concurrency: int, warmup_s: float, measure_s: float
) -> Phase:
    """`concurrency` connections, each sending its next request as soon as the last answered,
    until the measured window ends or the prepared requests run out."""
    start = time.perf_counter()
    phase = Phase((start + warmup_s, start + warmup_s + measure_s))
    feed = iter(requests)
    cpu = time.process_time()
    await asyncio.gather(*(_closed_worker(port, feed, phase) for _ in range(concurrency)))
    phase.generator_cpu_s = time.process_time() - cpu
    return phase


async def _closed_worker(port: int, feed: Iterator[WireRequest], phase: Phase) -> None:
    connection = Connection(port)
    try:
        while (now := time.perf_counter()) < phase.window[1]:
            request = next(feed, None)
            if request is None:
                break
            await _timed(connection, request, now, phase)
    finally:
        await connection.close()


class _Pool:
    """At most `size` connections; a request waits (on the clock) for a free one."""

    def __init__(self, port: int, size: int) -> None:
        self._port = port
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Connection] = []
        self._made: list[Connection] = []

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        async with self._slots:
            if not self._idle:
                self._made.append(Connection(self._port))
                self._idle.append(self._made[-1])
            connection = self._idle.pop()
            try:
                yield connection
            finally:
                self._idle.append(connection)

    async def close(self) -> None:
        for connection in self._made:
            await connection.close()


async def open_loop(
    port: int, requests: Sequence[WireRequest], rate: float, duration_s: float, connections: int
) -> Phase:
    """Send at a fixed `rate` whatever the answers, for `duration_s` or until requests run out."""
    count = min(len(requests), math.ceil(rate * duration_s))
    pool = _Pool(port, connections)
    start = time.perf_counter() + 0.01
    phase = Phase((start, math.inf))
    cpu = time.process_time()
    tasks = []
    for index in range(count):
        due = start + index / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        tasks.append(asyncio.create_task(_pooled(pool, requests[index], due, phase)))
    await asyncio.gather(*tasks)
    await pool.close()
    phase.generator_cpu_s = time.process_time() - cpu
    return phase


async def _pooled(pool: _Pool, request: WireRequest, due: float, phase: Phase) -> None:
    async with pool.connection() as connection:
        await _timed(connection, request, due, phase)
