"""Prometheus metrics, one registry per app (so tests can run several apps side by side)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labledger.compose import BATCH_BUCKETS, BatchSizes, LogBacklog
from labledger.core.errors import StoreUnavailable

log = structlog.get_logger("labledger.metrics")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "labledger_deliveries_total",
            "Webhook deliveries by outcome",
            ["forge", "outcome"],
            registry=self.registry,
        )
        self.attempts = Counter(
            "labledger_attempts_recorded_total", "Lab attempts recorded", registry=self.registry
        )
        self.signature_failures = Counter(
            "labledger_signature_failures_total",
            "Webhook requests refused for a missing or wrong signature",
            ["forge"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "labledger_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

    def watch_log(self, read: Callable[[], LogBacklog]) -> None:
        self.registry.register(LogBacklogCollector(read))

    def watch_gaps(self, count: Callable[[], int]) -> None:
        self.registry.register(PushChainGapsCollector(count))

    def watch_commits(self, sizes: BatchSizes) -> None:
        self.registry.register(CommitSizesCollector(sizes))


class CommitSizesCollector(Collector):
    """Deliveries per commit of this process's group-committing writer: near 1 at low load,
    growing with the load while one commit waits for the disk (storage/group_commit.py)."""

    def __init__(self, sizes: BatchSizes) -> None:
        self._sizes = sizes

    def collect(self) -> Iterator[HistogramMetricFamily]:
        sizes = self._sizes
        buckets = [
            (str(float(b)), n) for b, n in zip(BATCH_BUCKETS, list(sizes.buckets), strict=True)
        ]
        yield HistogramMetricFamily(
            "labledger_deliveries_per_commit",
            "Deliveries recorded by each commit of the group-committing writer",
            buckets=[*buckets, ("+Inf", sizes.commits)],
            sum_value=sizes.pieces,
        )


class LogBacklogCollector(Collector):
    """The Merkle log's lag, read from the database at each scrape: the integrator may run in
    another process (or another machine), so only the database knows. A checkpoint is signed
    only when entries arrive: alert when entries are queued and the checkpoint age grows
    past a few intervals, which means no integrator is running."""

    def __init__(self, read: Callable[[], LogBacklog]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            backlog = self._read()
        except StoreUnavailable as exc:
            log.warning("metrics.log_backlog_unavailable", detail=str(exc))
            return  # the scrape still answers; /healthz reports the database
        yield GaugeMetricFamily(
            "labledger_log_queued_entries",
            "Committed entries waiting to be integrated into the Merkle log",
            value=backlog.queued,
        )
        yield GaugeMetricFamily(
            "labledger_log_tree_size",
            "Entries covered by the newest signed checkpoint",
            value=backlog.tree_size,
        )
        if backlog.signed_at is not None:
            age = (datetime.now(UTC) - backlog.signed_at).total_seconds()
            yield GaugeMetricFamily(
                "labledger_checkpoint_age_seconds",
                "Seconds since the newest checkpoint was signed",
                value=max(age, 0.0),
            )


class PushChainGapsCollector(Collector):
    """Open gaps in push chains, counted in the database at each scrape (as the log gauges
    are): a push recorded by another process or by `reconcile` closes a gap there."""

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            gaps = self._count()
        except StoreUnavailable as exc:
            log.warning("metrics.push_chain_gaps_unavailable", detail=str(exc))
            return
        yield GaugeMetricFamily(
            "labledger_push_chain_gaps",
            "Recorded pushes whose before no recorded push of their ref ended at",
            value=gaps,
        )


# Label values come from fixed sets only: the method is the client's to choose (any token is
# valid HTTP), and every new label value is a time series kept until the process restarts.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


class LatencyMiddleware:
    """Times every request by its route template (not the raw path, to bound label values)
    and its method when it is a standard one."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self.metrics.latency.labels(
                method_label(scope["method"]), template, str(status)
            ).observe(time.perf_counter() - started)
