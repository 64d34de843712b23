"""Delivering the outbox to subscribers, signed as Standard Webhooks (at least once).

Each outbox row is sent with its stable `webhook-id` (the event id), so a receiver that keeps
the ids it has processed handles every event exactly once: a dispatcher killed after sending
and before recording the outcome sends the same id again, never a new one. Failures are
retried with exponential back-off; after `max_attempts` the row is a dead letter until an
operator replays it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from standardwebhooks.webhooks import Webhook

from labledger.config import Settings, Subscriber
from labledger.core.errors import InvalidRequest
from labledger.storage.outbox import OutboxEvent, SqlOutbox

log = structlog.get_logger("labledger.dispatch")
MAX_BACKOFF = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class SendResult:
    ok: bool
    status_code: int | None
    error: str | None


Sender = Callable[[str, Mapping[str, str], bytes, float], SendResult]


def http_post(url: str, headers: Mapping[str, str], body: bytes, timeout: float) -> SendResult:
    """POST with the standard library; any 2xx is success, everything else a retry."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return SendResult(200 <= answer.status < 300, answer.status, None)
    except urllib.error.HTTPError as exc:
        return SendResult(False, exc.code, f"HTTP {exc.code}")
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        return SendResult(False, None, f"{type(exc).__name__}: {exc}")


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
        send: Sender = http_post,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.outbox = outbox
        self.subscribers = {s.name: s for s in subscribers}
        self.max_attempts = max_attempts
        self.backoff = timedelta(seconds=backoff_seconds)
        self.timeout = timeout_seconds
        self.send = send
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, outbox: SqlOutbox) -> Dispatcher:
        return cls(
            outbox,
            settings.subscribers,
            max_attempts=settings.dispatch_max_attempts,
            backoff_seconds=settings.dispatch_backoff_seconds,
            timeout_seconds=settings.dispatch_timeout_seconds,
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
