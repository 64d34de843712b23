"""uvicorn's h11 protocol with a header-read timeout, against slowloris connections.

uvicorn has no such setting (uvicorn issue #157 lists it among the timeouts never added; its
`timeout_keep_alive` runs only between requests and is cancelled by every byte received), and
ASGI middleware cannot help: the app is called once the headers are whole. A client could so
hold a connection, and its buffers, forever by sending a header byte now and then. This small
subclass keeps uvicorn (its lifespan, workers, logging and graceful shutdown, which `serve`
relies on) and adds only a timer: armed when a connection opens and when it becomes ready for
its next request, cancelled once h11 has parsed the request's headers, and closing the
connection if it fires first. Slow bodies are the routes' concern (LABLEDGER_BODY_TIMEOUT_SECONDS).
"""

from __future__ import annotations

import asyncio

import h11
import structlog
from uvicorn.protocols.http.h11_impl import H11Protocol

log = structlog.get_logger("labledger.http")


class HeaderTimeoutH11Protocol(H11Protocol):
    # A class attribute, not a constructor argument: uvicorn builds protocols itself, and
    # spawned worker processes import this class afresh; `configure` runs in each worker.
    header_timeout_seconds = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    @classmethod
    def configure(cls, seconds: float) -> None:
        cls.header_timeout_seconds = seconds

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._disarm_header_timer()  # the request's headers are in

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(
            self.header_timeout_seconds, self._headers_too_slow
        )

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.warning(
                "http.header_timeout", client=self.client, seconds=self.header_timeout_seconds
            )
            self.transport.close()
