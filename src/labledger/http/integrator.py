"""The background tasks of `serve`: the Merkle log integrator and the outbox dispatcher.

Where the integrator runs is `LABLEDGER_INTEGRATOR`:
- `process`: a child process per web worker (labledger/services/integrate.py), supervised here:
  restarted if it dies, stopped with the worker;
- `thread`: a task of the web worker itself, on its thread pool. A round also starts before
  the interval is up once EARLY_ROUND_ENTRIES entries of this worker are waiting: the round
  shares the worker's GIL and SQLite's write lock with the webhooks, and under load one
  round a second would stop them for tens of milliseconds at a time;
- `none`: not here at all; run `labledger integrate --watch N` beside the server;
- `auto` (the default): `process` on PostgreSQL; `thread` on SQLite, where a second process
  would wait on the database's one write lock through SQLite's busy handler instead of the
  web worker's own queue of writers.

Database locks (`SqlLog.integrate`, `SqlOutbox.exclusive`) let only one process work at a
time, and the others skip that round. The dispatcher always runs in the web worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any

import structlog
from starlette.concurrency import run_in_threadpool

from labledger.config import Settings
from labledger.core.errors import StoreUnavailable
from labledger.core.note import SignerKey
from labledger.services.integrate import IntegratorProcess, integrate_round
from labledger.services.notify import Dispatcher
from labledger.services.reconcile import scheduled_syncs
from labledger.storage.merkle_log import SqlLog

log = structlog.get_logger("labledger.integrator")

RESTART_BACKOFF_MAX_S = 30.0
# A round in the web worker starts early once this many entries wait, so that under load a
# round holds SQLite's write lock briefly instead of for a whole interval's entries (the
# offered-rate scenario of `make bench`, bench/scenarios.py). Under load that is a checkpoint
# about every this many entries; when it is quiet, still at most one per interval.
EARLY_ROUND_ENTRIES = 256
EARLY_ROUND_POLL_S = 0.05


def integrator_mode(settings: Settings, merkle_log: SqlLog) -> str:
    if settings.integrator != "auto":
        return settings.integrator
    return "process" if merkle_log.engine.dialect.name == "postgresql" else "thread"


async def integrate_forever(
    merkle_log: SqlLog,
    signer: SignerKey,
    interval: float,
    queued: Callable[[], int] | None = None,
) -> None:
    """A round every `interval`, or as soon as `queued` (entries queued so far) has grown by
    EARLY_ROUND_ENTRIES since the last round began."""
    counted = queued() if queued else 0
    while True:
        await next_round(interval, queued, counted)
        counted = queued() if queued else 0
        await integrate_once(merkle_log, signer)


async def next_round(
    interval: float, queued: Callable[[], int] | None = None, counted: int = 0
) -> None:
    """Wait for the interval to pass, or for `queued` to reach `counted` +
    EARLY_ROUND_ENTRIES."""
    if queued is None:
        await asyncio.sleep(interval)
        return
    loop = asyncio.get_running_loop()
    due = loop.time() + interval
    while (left := due - loop.time()) > 0:
        await asyncio.sleep(min(left, EARLY_ROUND_POLL_S))
        if queued() - counted >= EARLY_ROUND_ENTRIES:
            return


async def integrate_once(merkle_log: SqlLog, signer: SignerKey) -> None:
    await run_in_threadpool(integrate_round, merkle_log, signer)


async def supervise(child: IntegratorProcess, interval: float) -> None:
    """Start the integrator process, and start it again whenever it stops by itself."""
    backoff = interval
    while True:
        started = time.monotonic()
        try:
            await run_in_threadpool(child.start)
        except OSError as exc:
            log.error("integrator.not_started", detail=str(exc), retry_in_s=backoff)
        else:
            while (code := child.exit_code()) is None:
                await asyncio.sleep(interval)
            if time.monotonic() - started > RESTART_BACKOFF_MAX_S:
                backoff = interval  # it ran a good while: not a crash loop
            # Entries stay queued meanwhile: nothing is lost, checkpoints only come later.
            log.error("integrator.exited", exit_code=code, restart_in_s=backoff)
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, RESTART_BACKOFF_MAX_S)


async def dispatch_forever(dispatcher: Dispatcher, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            report = await run_in_threadpool(dispatcher.run_once)
        except StoreUnavailable as exc:
            log.warning("dispatch.unavailable", detail=str(exc))
            continue
        except Exception:
            # Outcomes already recorded stay recorded; the rest is retried next round.
            log.exception("dispatch.failed")
            continue
        if report.delivered or report.retried or report.dead:
            log.info(
                "dispatch.round",
                delivered=report.delivered,
                retried=report.retried,
                dead=report.dead,
            )


def integrator_lifespan(
    merkle_log: SqlLog,
    signer: SignerKey,
    settings: Settings,
    dispatcher: Dispatcher | None = None,
    queued: Callable[[], int] | None = None,
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """`queued`: how many entries this worker has queued so far (SqlStore.entries_queued)."""
    mode = integrator_mode(settings, merkle_log)
    interval = settings.integrate_interval_seconds

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        child = None
        tasks = []
        if mode == "process":
            url = merkle_log.engine.url.render_as_string(hide_password=False)
            child = IntegratorProcess(url, signer, interval, settings.log_level)
            tasks.append(asyncio.create_task(supervise(child, interval)))
        elif mode == "thread":
            rounds = integrate_forever(merkle_log, signer, interval, queued)
            tasks.append(asyncio.create_task(rounds))
        else:
            log.info("integrator.external", hint="run `labledger integrate --watch N`")
        if dispatcher is not None:
            every = settings.dispatch_interval_seconds
            tasks.append(asyncio.create_task(dispatch_forever(dispatcher, every)))
        tasks.extend(asyncio.create_task(c) for c in scheduled_syncs(settings, merkle_log.engine))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            if child is not None:
                await run_in_threadpool(child.stop)
            if mode != "none":
                await integrate_once(merkle_log, signer)  # cover what arrived since the last round

    return lifespan
