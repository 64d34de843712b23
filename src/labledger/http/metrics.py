"""Prometheus metrics, one registry per app (so tests can run several apps side by side)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


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


class LatencyMiddleware:
    """Times every request by its route template (not the raw path, to bound label values)."""

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
            self.metrics.latency.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started
            )
