"""The background integrator of `serve`: batches committed entries into the Merkle log.

Every server process runs one; the database lock in `SqlLog.integrate` lets only one of
them work at a time, and the others skip that round.
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
from labledger.storage.merkle_log import SqlLog

log = structlog.get_logger("labledger.integrator")


async def integrate_forever(merkle_log: SqlLog, signer: SignerKey, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        await integrate_once(merkle_log, signer)


async def integrate_once(merkle_log: SqlLog, signer: SignerKey) -> None:
    try:
        checkpoint = await run_in_threadpool(merkle_log.integrate, signer)
    except StoreUnavailable as exc:
        log.warning("integrate.unavailable", detail=str(exc))
        return
    except Exception:
        # A failed round changes nothing (one transaction); keep serving and say why loudly.
        log.exception("integrate.failed")
        return
    if checkpoint is not None:
        log.info("integrate.checkpoint", tree_size=checkpoint.tree_size)


def integrator_lifespan(
    merkle_log: SqlLog, signer: SignerKey, interval: float
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(integrate_forever(merkle_log, signer, interval))
        try:
            yield
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
            await integrate_once(merkle_log, signer)  # cover what arrived since the last round

    return lifespan
