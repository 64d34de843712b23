"""The benchmark report's targets table and its profiler, on made-up figures (no timing)."""

from __future__ import annotations

import threading
import time
from typing import Any

from bench import goals
from bench.profile import Sampler
from bench.stats import spread

ISSUE_23_TARGETS = (
    "labledger ÷ naive stack, best deliveries/s",
    "p50 at concurrency 1",
    "p99 (ms) at an offered",
    "worst read p99 (ms) at",
    "peak server RSS (MB)",
    "tamper evidence on ÷ off",
    "`labledger verify` entries/s",
    "deliveries per commit",
)


def _write_target(rate: float, p50: float) -> dict[str, Any]:
    return {
        "saturation": {"1": {"deliveries_per_s": spread([rate]), "p50_ms": spread([p50])}},
        "rate": {"p99_ms": spread([20.0])},
        "peak_rss_mb": spread([120.0]),
    }


def _results(**labledger: Any) -> dict[str, Any]:
    reads = {"p99_ms": spread([4.0])}
    return {
        "config": {"rate": 200.0, "read_attempts": 1_000_000, "saturation_level": 32},
        "dialects": ["sqlite"],
        "writes": {
            "http_bound": _write_target(900.0, 1.0),
            "sqlite": {
                "labledger": {**_write_target(300.0, 3.0), **labledger},
                "naive": _write_target(200.0, 3.0),
                "db_bound": _write_target(800.0, 1.0),
            },
        },
        "reads": {"sqlite": {"http": dict.fromkeys(goals.READ_KINDS, reads)}},
        "tamper": {
            "on_off": {"sqlite": {"on_over_off": spread([0.9])}},
            "verify": {"sqlite": {"verify": {"entries_per_s": spread([150_000.0])}}},
        },
    }


def _row(lines: list[str], start: str) -> str:
    return next(line for line in lines if line.startswith(f"| {start}"))


def test_every_issue_23_target_stands_beside_its_figure() -> None:
    """Each target of issue 23 has a row with its target, this run's figure and whether met."""
    lines = goals.table(_results(deliveries_per_commit=spread([6.5])))
    for name in ISSUE_23_TARGETS:
        assert name in "\n".join(lines), name
    assert _row(lines, "labledger ÷ naive") == (
        "| labledger ÷ naive stack, best deliveries/s (never below 1.0) | ≥ 1.5 | 1.50 | yes |"
    )
    assert "| ≤ 50 | 20.0 | yes |" in _row(lines, "p99 (ms)")
    assert "| reported | 6.5 |" in _row(lines, "deliveries per commit")


def test_a_target_missed_says_no() -> None:
    """A ratio under its target is marked as missed, not hidden."""
    results = _results()
    results["tamper"]["on_off"]["sqlite"]["on_over_off"] = spread([0.5])
    assert _row(goals.table(results), "tamper evidence").endswith("| 0.50 | **no** |")


def test_a_figure_the_run_lacks_says_not_measured() -> None:
    """Without the writer's histogram in /metrics, deliveries per commit is "not measured"."""
    row = _row(goals.table(_results()), "deliveries per commit")
    assert f"| {goals.NOT_MEASURED} |" in row


def test_a_registered_scenario_adds_its_goals() -> None:
    """A scenario of bench/suite.py's registry puts its goals in the same table."""
    results = _results()
    results["scenarios"] = {
        "ui_overview": {
            "title": "Lab overview",
            "goals": [
                {
                    "goal": "lab overview, 1,000 sessions (ms)",
                    "target": "≤ 300",
                    "values": {"sqlite": 120.0},
                    "met": {"sqlite": True},
                }
            ],
            "tables": [],
        }
    }
    assert _row(goals.table(results), "lab overview") == (
        "| lab overview, 1,000 sessions (ms) | ≤ 300 | 120 | yes |"
    )


def _busy_for(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(range(200))


def _waits(stop: threading.Event) -> None:
    stop.wait()


def test_the_sampler_counts_working_threads_and_leaves_waiting_ones_out() -> None:
    """Threads doing work are sampled; a thread waiting for an event is not."""
    sampler = Sampler(interval_s=0.002)
    stop = threading.Event()
    waiter = threading.Thread(target=_waits, args=(stop,))
    worker = threading.Thread(target=_busy_for, args=(0.3,))
    sampler.start()
    waiter.start()
    sampler.on.set()
    worker.start()
    worker.join()
    sampler.on.clear()
    sampler.stopped.set()
    stop.set()
    waiter.join()
    found = sampler.summary()
    names = [f["function"] for f in found["cumulative"]]
    assert found["samples"] > 0
    assert any(name.endswith(":_busy_for") for name in names)
    assert not any(name.endswith(":_waits") for name in names)
