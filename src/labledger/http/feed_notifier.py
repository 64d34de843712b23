"""One database check per interval for every long-poll on `/api/v1/feed?wait=`.

Each waiting client used to query the feed itself every interval: four hundred waiters were
two thousand queries a second, and webhooks queued behind them. Now waiters share one read of
the log's head (its highest leaf index) per interval and query their own page only when the
head has moved. A waiter holds no thread and no connection while it waits; how many may wait
at once is capped (LABLEDGER_FEED_MAX_WAITERS), past which the answer is 503 + Retry-After.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

RETRY_AFTER = {"Retry-After": "5"}


class FeedNotifier:
    def __init__(self, read_head: Callable[[], int], interval: float, max_waiters: int) -> None:
        """`read_head` returns the highest leaf index in the log (-1 when empty)."""
        self._read_head = read_head
        self.interval = interval
        self.max_waiters = max_waiters
        self.waiters = 0
        self._head = -1
        self._read_at = float("-inf")
        self._reading: asyncio.Future[int] | None = None

    async def head(self) -> int:
        """The log's head as read at most one interval ago; one read serves every caller."""
        if time.monotonic() - self._read_at < self.interval:
            return self._head
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read())
        # shielded: a client that disconnects must not cancel the read others wait for
        return await asyncio.shield(self._reading)

    async def _read(self) -> int:
        try:
            self._head = await run_in_threadpool(self._read_head)
            self._read_at = time.monotonic()
            return self._head
        finally:
            self._reading = None

    async def wait_past(self, seen: int, deadline: float) -> int:
        """Wait until the head moves past `seen` or the deadline passes; the head then."""
        if self.waiters >= self.max_waiters:
            detail = "too many feed long-polls waiting (LABLEDGER_FEED_MAX_WAITERS); retry later"
            raise HTTPException(503, detail, headers=RETRY_AFTER)
        self.waiters += 1
        try:
            while (left := deadline - time.monotonic()) > 0:
                await asyncio.sleep(min(self.interval, left))
                head = await self.head()
                if head > seen:
                    return head
            return seen
        finally:
            self.waiters -= 1
