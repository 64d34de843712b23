"""How much CPU the generator itself costs: the raw client against httpx2, on the HTTP bound.

Both clients send the same pre-signed deliveries to the cheapest server there is (the HTTP
bound), so the generator's share of the CPU is at its largest here; against labledger it is
smaller by the ratio of the two servers' CPU per request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx2

from bench.config import SATURATION_REPOS, BenchConfig
from bench.loadgen import Phase, closed_loop
from bench.payloads import SignedPush, signed_pushes
from bench.scenarios import wire
from bench.servers import SECRET
from bench.targets import Target, measured
from bench.wire import HOST

LEVEL = 8


def _headers(push: SignedPush) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": push.delivery_id,
        "x-github-hook-id": "4242",
        "x-hub-signature-256": push.signature,
    }


async def _httpx_worker(
    client: httpx2.AsyncClient, feed: Iterator[tuple[SignedPush, dict[str, str]]], phase: Phase
) -> None:
    while (now := time.perf_counter()) < phase.window[1]:
        item = next(feed, None)
        if item is None:
            return
        push, headers = item
        answer = await client.post("/webhooks/github", content=push.body, headers=headers)
        phase.record(now, time.perf_counter(), answer.status_code, len(push.commit_shas))


async def _httpx_loop(
    port: int, pushes: Sequence[SignedPush], warmup_s: float, measure_s: float
) -> Phase:
    """The same closed loop as loadgen.closed_loop, with httpx2 doing the HTTP."""
    feed = iter([(p, _headers(p)) for p in pushes])
    limits = httpx2.Limits(max_connections=LEVEL, max_keepalive_connections=LEVEL)
    # The client (and its TLS context) is made before the clock starts, like the raw requests.
    async with httpx2.AsyncClient(base_url=f"http://{HOST}:{port}", limits=limits) as client:
        start = time.perf_counter()
        phase = Phase((start + warmup_s, start + warmup_s + measure_s))
        cpu = time.process_time()
        await asyncio.gather(*(_httpx_worker(client, feed, phase) for _ in range(LEVEL)))
        phase.generator_cpu_s = time.process_time() - cpu
    return phase


def generator_cost(target: Target, config: BenchConfig) -> dict[str, Any]:
    """Generator and server CPU per request for both clients at concurrency 8."""
    warmup, window = config.warmup_s, config.measure_s
    pushes = signed_pushes(SECRET, SATURATION_REPOS, config.pool_cap, "calibrate-raw")
    requests = wire(pushes, target.port)
    raw = measured(
        target, lambda: asyncio.run(closed_loop(target.port, requests, LEVEL, warmup, window))
    )
    pushes = signed_pushes(SECRET, SATURATION_REPOS, config.pool_cap, "calibrate-httpx")
    httpx = measured(target, lambda: asyncio.run(_httpx_loop(target.port, pushes, warmup, window)))
    keys = ("deliveries_per_s", "generator_cpu_ms_per_request", "server_cpu_ms_per_request")
    return {
        "concurrency": LEVEL,
        "raw": {k: raw[k] for k in keys},
        "httpx2": {k: httpx[k] for k in keys},
    }
