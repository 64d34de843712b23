"""Percentiles, per-phase figures and the median/min/max of repeated runs."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.loadgen import Phase


@dataclass(frozen=True, slots=True)
class Cost:
    """CPU seconds spent during one phase by each party."""

    generator_s: float
    server_s: float
    database_s: float


def percentile(ordered: Sequence[float], fraction: float) -> float | None:
    """Linear interpolation between the closest ranks; None for no samples."""
    if not ordered:
        return None
    position = (len(ordered) - 1) * fraction
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_ms(latencies: Sequence[float]) -> dict[str, float | None]:
    ordered = sorted(latencies)
    figures = {f"p{q}_ms": percentile(ordered, q / 100) for q in (50, 95, 99)}
    figures["max_ms"] = ordered[-1] if ordered else None
    return {k: None if v is None else round(v * 1000, 3) for k, v in figures.items()}


def phase_figures(phase: Phase, cost: Cost) -> dict[str, Any]:
    """Throughput over the measured window; CPU per request over the whole phase."""
    sent = max(phase.sent, 1)
    ok_total = sum(n for status, n in phase.statuses.items() if 200 <= status < 300)
    return {
        "deliveries_per_s": round(phase.ok / phase.window_s, 2),
        "attempts_per_s": round(phase.attempts / phase.window_s, 2),
        **latency_ms(phase.latencies),
        "window_s": round(phase.window_s, 3),
        "requests": phase.sent,
        "statuses": {str(k): n for k, n in sorted(phase.statuses.items())},
        "errors": phase.sent - ok_total,
        "status_5xx": sum(n for status, n in phase.statuses.items() if status >= 500),
        "generator_cpu_ms_per_request": round(cost.generator_s / sent * 1000, 4),
        "server_cpu_ms_per_request": round(cost.server_s / sent * 1000, 4),
        "database_cpu_ms_per_request": round(cost.database_s / sent * 1000, 4),
    }


def spread(values: Sequence[float]) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), 4),
        "min": round(min(values), 4),
        "max": round(max(values), 4),
        "runs": [round(v, 4) for v in values],
    }


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def combine(runs: Sequence[Any]) -> Any:
    """Merge runs of the same shape: numbers become median/min/max, the rest is kept."""
    first = runs[0]
    if isinstance(first, dict):
        keys = list(dict.fromkeys(k for run in runs for k in run))
        return {k: combine([run[k] for run in runs if k in run]) for k in keys}
    if all(_is_number(v) for v in runs):
        return spread(runs)
    return first if all(v == first for v in runs) else list(runs)


def is_spread(value: object) -> bool:
    return isinstance(value, dict) and "median" in value and "runs" in value
