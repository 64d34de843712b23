"""Delivering the outbox to subscribers, signed as Standard Webhooks (at least once).

Each outbox row is sent with its stable `webhook-id` (the event id), so a receiver that keeps
the ids it has processed handles every event exactly once: a dispatcher killed after sending
and before recording the outcome sends the same id again, never a new one. Failures are
retried with exponential back-off; after `max_attempts` the row is a dead letter until an
operator replays it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from standardwebhooks.webhooks import Webhook

from labledger.config import Settings, Subscriber
from labledger.core.errors import InvalidRequest
from labledger.storage.outbox import OutboxEvent, SqlOutbox

if TYPE_CHECKING:
    import httpx2

log = structlog.get_logger("labledger.services.notify")
MAX_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    status_code: int | None
    error: str | None


Sender = Callable[[str, Mapping[str, str], bytes, float], SendResult]


class HttpSender:
    """POSTs to subscribers; any 2xx is success, everything else a retry.

    A redirect is never followed: a client that follows 301/302/303 re-sends as a GET without
    the body, and the receiver's answer to that would mark an event delivered that no one
    received, while the signature headers go to whatever host the Location names. Proxies
    come from `proxy` (LABLEDGER_DISPATCH_PROXY) alone, never from HTTP(S)_PROXY in the
    environment of whoever started the server.
    """

    def __init__(self, proxy: str | None = None) -> None:
        self._proxy = proxy
        self._client: httpx2.Client | None = None
        self._making = threading.Lock()

    def __call__(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> SendResult:
        import httpx2

        try:
            # stream: only the status and headers are read; a subscriber's body is never held
            with self._pooled().stream(
                "POST", url, content=body, headers=dict(headers), timeout=timeout
            ) as answer:
                return _result(answer.status_code, answer.headers.get("location"))
        except (httpx2.HTTPError, httpx2.InvalidURL, OSError) as exc:
            return SendResult(False, None, f"{type(exc).__name__}: {exc}")

    def _pooled(self) -> httpx2.Client:
        with self._making:
            if self._client is None:
                import httpx2  # imported on first send: the CLI's other verbs start faster

                self._client = httpx2.Client(
                    follow_redirects=False, trust_env=False, proxy=self._proxy
                )
            return self._client


def _result(status: int, location: str | None) -> SendResult:
    if 200 <= status < 300:
        return SendResult(True, status, None)
    if 300 <= status < 400:
        shown = (location or "(none)")[:300]
        log.warning("dispatch.redirect_not_followed", status=status, location=shown)
        return SendResult(False, status, f"HTTP {status} redirect to {shown}, not followed")
    return SendResult(False, status, f"HTTP {status}")


http_post: Sender = HttpSender()


@dataclass(frozen=True, slots=True)
class RoundReport:
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    skipped: int = 0


class Dispatcher:
    def __init__(
        self,
        outbox: SqlOutbox,
        subscribers: tuple[Subscriber, ...],
        *,
        max_attempts: int = 8,
        backoff_seconds: float = 2.0,
        timeout_seconds: float = 10.0,
        send: Sender | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.outbox = outbox
        self.subscribers = {s.name: s for s in subscribers}
        self.max_attempts = max_attempts
        self.backoff = timedelta(seconds=backoff_seconds)
        self.timeout = timeout_seconds
        self.send = send or http_post
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, outbox: SqlOutbox) -> Dispatcher:
        return cls(
            outbox,
            settings.subscribers,
            max_attempts=settings.dispatch_max_attempts,
            backoff_seconds=settings.dispatch_backoff_seconds,
            timeout_seconds=settings.dispatch_timeout_seconds,
            send=HttpSender(settings.dispatch_proxy) if settings.dispatch_proxy else None,
        )

    def run_once(self, limit: int = 100) -> RoundReport:
        """Send every due event once; None of them is sent twice in one round."""
        with self.outbox.exclusive() as mine:
            if not mine:
                return RoundReport()
            counts = {"delivered": 0, "retry": 0, "dead": 0, "skipped": 0}
            for event in self.outbox.due(self.clock(), limit):
                counts[self._deliver(event)] += 1
        return RoundReport(counts["delivered"], counts["retry"], counts["dead"], counts["skipped"])

    def _deliver(self, event: OutboxEvent) -> str:
        subscriber = self.subscribers.get(event.subscriber)
        if subscriber is None:
            # Kept pending, not dropped: the subscriber may come back in the configuration.
            log.warning("dispatch.unknown_subscriber", subscriber=event.subscriber)
            return "skipped"
        body = json.dumps(event.payload, separators=(",", ":"), sort_keys=True)
        # The wall clock, not the scheduling clock: receivers reject stale signatures.
        sent_at = datetime.now(UTC)
        signature = Webhook(subscriber.secret.get_secret_value()).sign(
            event.event_id, sent_at, body
        )
        headers = {
            "content-type": "application/json",
            "webhook-id": event.event_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature,
            "user-agent": "labledger-dispatch",
        }
        result = self.send(subscriber.url, headers, body.encode(), self.timeout)
        return self._record(event, result)

    def _record(self, event: OutboxEvent, result: SendResult) -> str:
        now = self.clock()
        tried = event.attempts + 1
        if result.ok:
            self.outbox.append_state(
                event.id, "delivered", tried, now, status_code=result.status_code
            )
            return "delivered"
        if tried >= self.max_attempts:
            self.outbox.append_state(
                event.id, "dead", tried, now, status_code=result.status_code, error=result.error
            )
            log.warning("dispatch.dead_letter", outbox_id=event.id, event_id=event.event_id)
            return "dead"
        delay = min(self.backoff * 2 ** (tried - 1), MAX_BACKOFF)
        self.outbox.append_state(
            event.id,
            "retry",
            tried,
            now,
            next_attempt_at=now + delay,
            status_code=result.status_code,
            error=result.error,
        )
        return "retry"

    def replay(self, outbox_id: int) -> OutboxEvent:
        """Give a dead letter a fresh retry budget, due now; the event id stays the same."""
        event = self.outbox.get(outbox_id)
        if event.state != "dead":
            raise InvalidRequest(f"outbox event {outbox_id} is {event.state}, not a dead letter")
        now = self.clock()
        self.outbox.append_state(outbox_id, "replay", 0, now, next_attempt_at=now)
        return self.outbox.get(outbox_id)
