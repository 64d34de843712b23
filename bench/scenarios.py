"""The write scenarios: saturation, an offered rate, the deadline burst, the duplicate storm."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bench import dbbound, naive_store
from bench.config import SATURATION_REPOS, STORM_REPO, BenchConfig
from bench.loadgen import WireRequest, closed_loop, open_loop
from bench.payloads import SignedPush, get_request, post_request, signed_pushes
from bench.servers import SECRET, TOKEN
from bench.targets import Target, measured
from bench.wire import fetch
from labledger.storage.engine import make_engine

BURST_LIMIT_S = 300.0  # a burst that has not drained by then is cut off, and says so


def wire(pushes: list[SignedPush], port: int) -> list[WireRequest]:
    return [WireRequest(post_request(p, port), len(p.commit_shas)) for p in pushes]


def _pool_size(config: BenchConfig, last_rate: float | None) -> int:
    """Enough deliveries for the level, guessed from the previous level's rate."""
    if last_rate is None:
        return config.pool_cap
    guess = int(last_rate * (config.warmup_s + config.measure_s) * 4)
    return min(config.pool_cap, max(400, guess))


def saturation_level(
    target: Target, config: BenchConfig, level: int, nonce: str, last_rate: float | None
) -> dict[str, Any]:
    """A closed loop at one concurrency level, on fresh deliveries (as many as the previous
    level's rate suggests)."""
    pushes = signed_pushes(SECRET, SATURATION_REPOS, _pool_size(config, last_rate), nonce)
    return saturate(target, config, pushes, level)


def saturate(
    target: Target, config: BenchConfig, pushes: list[SignedPush], level: int
) -> dict[str, Any]:
    warmup, window = config.warmup_s, config.measure_s
    if target.server is None:
        items = [dbbound.prepare(p, target.sessions[p.repository_id]) for p in pushes]
        url = target.database.url if target.database else ""
        return measured(target, lambda: dbbound.closed_loop(url, items, level, warmup, window))
    requests = wire(pushes, target.port)
    return measured(
        target, lambda: asyncio.run(closed_loop(target.port, requests, level, warmup, window))
    )


def offered_rate(target: Target, config: BenchConfig, nonce: str) -> dict[str, Any]:
    """An open loop at the configured rate: the latency a steady stream of pushes sees."""
    count = int(config.rate * config.rate_s)
    requests = wire(signed_pushes(SECRET, SATURATION_REPOS, count, nonce), target.port)
    rate, seconds, pool = config.rate, config.rate_s, config.rate_connections
    figures = measured(
        target, lambda: asyncio.run(open_loop(target.port, requests, rate, seconds, pool))
    )
    return {"offered_per_s": rate, **figures}


def burst(target: Target, config: BenchConfig, nonce: str) -> dict[str, Any]:
    """Every session's last pushes at once: how long until all are answered, and errors."""
    pushes = signed_pushes(SECRET, config.burst_repos, config.burst_pushes, nonce)
    requests = wire(pushes, target.port)
    before = target.stored_attempts()
    level = config.burst_concurrency
    figures = measured(
        target,
        lambda: asyncio.run(closed_loop(target.port, requests, level, 0.0, BURST_LIMIT_S)),
    )
    expected = sum(r.attempts for r in requests)
    return {
        "pushes": len(pushes),
        "sessions": config.burst_sessions,
        "concurrency": level,
        "drain_s": figures["window_s"],
        "attempts_expected": expected,
        "attempts_stored": target.stored_attempts() - before,
        **figures,
    }


def duplicate_storm(target: Target, config: BenchConfig, nonce: str) -> dict[str, Any]:
    """One delivery sent many times at once: one record set, the rest answered as duplicates."""
    push = signed_pushes(SECRET, [STORM_REPO], 1, nonce, mix=(5,))[0]
    requests = wire([push] * config.storm_copies, target.port)
    level = config.storm_concurrency
    figures = measured(
        target, lambda: asyncio.run(closed_loop(target.port, requests, level, 0.0, 120.0))
    )
    record_sets = _record_sets(target, push)
    return {
        "copies": config.storm_copies,
        "concurrency": level,
        "record_sets": record_sets,
        "exactly_one_record_set": record_sets == 1,
        **figures,
    }


def _record_sets(target: Target, push: SignedPush) -> int:
    if target.name == "naive" and target.database is not None:
        engine = make_engine(target.database.url)
        try:
            return naive_store.count_deliveries(engine, push.delivery_id)
        finally:
            engine.dispose()
    return asyncio.run(_ledger_record_sets(target.port, push))


async def _ledger_record_sets(port: int, push: SignedPush) -> int:
    """Through the API: the delivery's attempts, and how many attempts each commit has."""
    status, body = await fetch(
        port, get_request(f"/api/v1/deliveries/{push.delivery_id}", port, TOKEN)
    )
    if status != 200:
        return 0
    recorded = {a["commit_sha"] for a in json.loads(body)["attempts"]}
    counts = []
    for sha in push.commit_shas:
        status, body = await fetch(
            port, get_request(f"/api/v1/attempts?commit_sha={sha}", port, TOKEN)
        )
        counts.append(len(json.loads(body)["items"]) if status == 200 else 0)
    return max(counts) if recorded == set(push.commit_shas) else 0
