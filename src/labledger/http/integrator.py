"""The background tasks of `serve`: the Merkle log integrator and the outbox dispatcher.

Every server process runs them; database locks (`SqlLog.integrate`, `SqlOutbox.exclusive`)
let only one process work at a time, and the others skip that round.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any

import structlog
from starlette.concurrency import run_in_threadpool

from labledger.core.errors import StoreUnavailable
from labledger.core.note import SignerKey
from labledger.dispatch import Dispatcher
from labledger.storage.merkle_log import SqlLog

log = structlog.get_logger("labledger.integrator")


# A round holds the integrator lock (on SQLite, the database's write lock) while it works: a
# bounded batch keeps a large backlog from stalling webhooks; the next round takes the rest.
BACKGROUND_BATCH = 10_000


async def integrate_forever(merkle_log: SqlLog, signer: SignerKey, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        await integrate_once(merkle_log, signer)


async def integrate_once(merkle_log: SqlLog, signer: SignerKey) -> None:
    try:
        checkpoint = await run_in_threadpool(merkle_log.integrate, signer, None, BACKGROUND_BATCH)
    except StoreUnavailable as exc:
        log.warning("integrate.unavailable", detail=str(exc))
        return
    except Exception:
        # A failed round changes nothing (one transaction); keep serving and say why loudly.
        log.exception("integrate.failed")
        return
    if checkpoint is not None:
        log.info("integrate.checkpoint", tree_size=checkpoint.tree_size)


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
    interval: float,
    dispatcher: Dispatcher | None = None,
    dispatch_interval: float = 1.0,
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(integrate_forever(merkle_log, signer, interval))]
        if dispatcher is not None:
            tasks.append(asyncio.create_task(dispatch_forever(dispatcher, dispatch_interval)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            await integrate_once(merkle_log, signer)  # cover what arrived since the last round

    return lifespan
