"""What a request may cost, decided before routing and before authentication.

Pure ASGI middleware, so a refusal costs neither a parsed body nor a token check nor a thread:
- `BodyLimits`: a size limit on every API body (LABLEDGER_MAX_API_BODY_BYTES), on streamed
  bytes, chunked bodies included (webhooks keep LABLEDGER_MAX_BODY_BYTES, checked by their
  route before it reads anything); and a cap on the webhook bytes held across all requests
  at once (LABLEDGER_WEBHOOK_BYTES_IN_FLIGHT). An unsigned body can only be refused once it is
  whole (its signature covers every byte), so without the cap forty concurrent 24 MiB bodies
  are a gigabyte held before the first 401. A body refused midway by the cap answers like one
  refused up front (503 `busy`); a sender gone midway is one log line, never a traceback.
- `Lanes`: how many requests of each kind run at once. Each request holds a worker thread and a
  database connection; webhooks have their own lane, so read traffic (however slow each read is)
  never takes the capacity a webhook needs to answer within GitHub's 10 s.
"""

from __future__ import annotations

from urllib.parse import parse_qs

import anyio
import structlog
from starlette.datastructures import Headers
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("labledger.http")
WEBHOOK_PREFIX = "/webhooks/"
OPS_PATHS = frozenset({"/healthz", "/metrics"})
LONG_POLL_PATH = "/api/v1/feed"
RETRY_AFTER = {"Retry-After": "5"}
OPS_CONCURRENCY = 4
# How long a request queues for its lane before a 503: a webhook may wait longer (GitHub does
# not redeliver a 503 by itself), but never so long that the answer misses GitHub's 10 s.
API_LANE_WAIT_SECONDS = 2.0
WEBHOOK_LANE_WAIT_SECONDS = 5.0


async def refuse(scope: Scope, send: Send, status: int, code: str, detail: str) -> None:
    """Answer in the API's ErrorOut shape without reading the body or calling the app."""
    headers = RETRY_AFTER if status == 503 else None
    answer = JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)
    await answer(scope, _nothing_to_receive, send)


async def _nothing_to_receive() -> Message:
    return {"type": "http.disconnect"}


def _declared_length(scope: Scope) -> int | None:
    value = Headers(scope=scope).get("content-length", "")
    return int(value) if value.isascii() and value.isdigit() else None


class ByteBudget:
    """Bytes that concurrent requests may hold at once; the event loop is its only user."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.held = 0

    def take(self, size: int) -> bool:
        if self.held + size > self.total:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size


class BodyLimits:
    """API bodies: refuse a declared oversize body at once, and count streamed bytes with
    Starlette's own limiter (which FastAPI's body parsing also answers 413 for). Webhook
    bodies: hold them in a budget shared by every request, reserving a declared length before
    reading any of it; their size limit stays the route's (it refuses a declared oversize body
    unread, and counts every refusal in the metrics)."""

    def __init__(
        self, app: ASGIApp, *, api_bytes: int, webhook_bytes: int, webhook_bytes_in_flight: int
    ) -> None:
        self.app = app
        self.api = RequestBodyLimitMiddleware(app, api_bytes)
        self.webhook_bytes = webhook_bytes
        self.in_flight = ByteBudget(webhook_bytes_in_flight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if scope["path"].startswith(WEBHOOK_PREFIX):
            await self._budgeted(scope, receive, send, declared)
        elif declared is not None and declared > self.api.max_body_size:
            detail = (
                f"request body exceeds the limit of {self.api.max_body_size} bytes "
                "(LABLEDGER_MAX_API_BODY_BYTES)"
            )
            await refuse(scope, send, 413, "too_large", detail)
        else:
            await self.api(scope, receive, send)

    async def _budgeted(
        self, scope: Scope, receive: Receive, send: Send, declared: int | None
    ) -> None:
        # A declared oversize body reserves nothing: the route refuses it without reading.
        counted_length = declared is None
        held = 0 if declared is None or declared > self.webhook_bytes else declared
        if not self.in_flight.take(held):
            await refuse(scope, send, 503, "busy", _BUSY)
            return
        answering = False

        async def counted() -> Message:
            nonlocal held
            message = await receive()
            size = len(message.get("body", b"")) if counted_length else 0
            # Past the size limit the route refuses the body itself (413), so one request
            # never holds more than LABLEDGER_MAX_BODY_BYTES of the budget.
            if size and held + size <= self.webhook_bytes:
                if not self.in_flight.take(size):
                    raise _OverBudget
                held += size
            return message

        async def answer(message: Message) -> None:
            nonlocal answering
            answering = True
            await send(message)

        try:
            await self.app(scope, counted, answer)
        except _OverBudget:
            if answering:
                raise
            await refuse(scope, send, 503, "busy", _BUSY)  # refused midway, as if up front
        except ClientDisconnect:  # the sender gave up inside its body: no one to answer
            log.info("http.client_gone", path=scope["path"])
        finally:
            self.in_flight.give(held)


class _OverBudget(Exception):
    """A streamed webhook body reached the bytes in flight; `BodyLimits` answers it."""


_BUSY = "too many webhook bytes in flight (LABLEDGER_WEBHOOK_BYTES_IN_FLIGHT); deliver again later"


class Lanes:
    """A fixed number of requests per kind (webhooks, operations, API reads) at once; a
    request that cannot get a place within its wait is answered 503 with Retry-After.
    Feed long-polls wait on the shared feed notifier instead (it caps them itself), holding
    no thread and no connection while they wait."""

    def __init__(self, app: ASGIApp, *, api: int, webhooks: int) -> None:
        self.app = app
        self.api = anyio.Semaphore(api)
        self.webhooks = anyio.Semaphore(webhooks)
        self.ops = anyio.Semaphore(OPS_CONCURRENCY)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lane = self._lane(scope) if scope["type"] == "http" else None
        if lane is None:
            await self.app(scope, receive, send)
            return
        wait = WEBHOOK_LANE_WAIT_SECONDS if lane is self.webhooks else API_LANE_WAIT_SECONDS
        placed = False
        with anyio.move_on_after(wait):
            await lane.acquire()
            placed = True
        if not placed:
            await refuse(scope, send, 503, "busy", "the server is at capacity; retry later")
            return
        try:
            await self.app(scope, receive, send)
        finally:
            lane.release()

    def _lane(self, scope: Scope) -> anyio.Semaphore | None:
        path: str = scope["path"]
        if path.startswith(WEBHOOK_PREFIX):
            return self.webhooks
        if path in OPS_PATHS:
            return self.ops
        if path == LONG_POLL_PATH and _waits(scope):
            return None
        return self.api


def _waits(scope: Scope) -> bool:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return any(w not in ("", "0") for w in query.get("wait", []))
