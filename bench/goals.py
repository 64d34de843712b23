"""Issue 23's targets, each with its figure from this run beside it, on every database.

One row per target; a registered scenario (bench/suite.py's SCENARIOS) adds its own rows.
A figure the run did not produce says "not measured", never a figure from elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.figures import DASH, DIALECTS, describe, markdown_table, median, ratio
from bench.results import READ_KINDS
from bench.stats import spread

NOT_MEASURED = "not measured"


@dataclass(frozen=True, slots=True)
class Goal:
    """A target: `check` tells whether a median (and the worst run) meets it."""

    name: str
    target: str
    check: Callable[[dict[str, Any]], bool] | None
    find: Callable[[dict[str, Any], str], dict[str, Any] | float | None]
    digits: int = 0


def _at_least(limit: float) -> Callable[[dict[str, Any]], bool]:
    return lambda v: v["median"] >= limit


def _at_most(limit: float) -> Callable[[dict[str, Any]], bool]:
    return lambda v: v["median"] <= limit


def _versus_naive(results: dict[str, Any], dialect: str) -> dict[str, Any]:
    return ratio(results, dialect, "naive")


def _p50_at_one(results: dict[str, Any], dialect: str) -> dict[str, Any] | None:
    """labledger's p50 at concurrency 1 over the naive stack's, run by run."""
    writes = results["writes"][dialect]
    try:
        ours = writes["labledger"]["saturation"]["1"]["p50_ms"]["runs"]
        theirs = writes["naive"]["saturation"]["1"]["p50_ms"]["runs"]
    except KeyError:
        return None
    return spread([a / b if b else 0.0 for a, b in zip(ours, theirs, strict=True)])


def _rate_p99(results: dict[str, Any], dialect: str) -> dict[str, Any] | None:
    found = results["writes"][dialect]["labledger"].get("rate", {})
    return found.get("p99_ms")


def _worst_read(results: dict[str, Any], dialect: str) -> float | None:
    reads = results.get("reads", {}).get(dialect)
    if reads is None:
        return None
    return max(median(reads["http"][kind]["p99_ms"]) or 0.0 for kind in READ_KINDS)


def _rss(results: dict[str, Any], dialect: str) -> float | None:
    writes = median(results["writes"][dialect]["labledger"].get("peak_rss_mb")) or 0.0
    reads = results.get("reads", {}).get(dialect, {}).get("peak_rss_mb") or 0.0
    return max(writes, reads) or None


def _on_over_off(results: dict[str, Any], dialect: str) -> dict[str, Any] | None:
    found = results.get("tamper", {}).get("on_off", {}).get(dialect)
    return None if found is None else found["on_over_off"]


def _verify_rate(results: dict[str, Any], dialect: str) -> dict[str, Any] | None:
    found = results.get("tamper", {}).get("verify", {}).get(dialect)
    return None if found is None else found["verify"]["entries_per_s"]


def _per_commit(results: dict[str, Any], dialect: str) -> dict[str, Any] | float | None:
    found = results["writes"][dialect]["labledger"].get("deliveries_per_commit")
    if isinstance(found, list):  # measured in some runs only: the runs that have it
        numbers = [v for v in found if isinstance(v, int | float)]
        return spread(numbers) if numbers else None
    return found


def issue_goals(results: dict[str, Any]) -> list[Goal]:
    c = results["config"]
    return [
        Goal("labledger ÷ naive stack, best deliveries/s (never below 1.0)", "≥ 1.5",
             lambda v: v["median"] >= 1.5 and v["min"] >= 1.0, _versus_naive, 2),
        Goal("p50 at concurrency 1, labledger ÷ naive stack", "≤ 1.2", _at_most(1.2),
             _p50_at_one, 2),
        Goal(f"p99 (ms) at an offered {c['rate']:g} deliveries/s", "≤ 50", _at_most(50.0),
             _rate_p99, 1),
        Goal(f"worst read p99 (ms) at {c['read_attempts']:,} attempts", "≤ 10", _at_most(10.0),
             _worst_read, 1),
        Goal("peak server RSS (MB)", "≤ 200", _at_most(200.0), _rss),
        Goal("tamper evidence on ÷ off, deliveries/s", "≥ 0.8", _at_least(0.8), _on_over_off, 2),
        Goal("`labledger verify` entries/s", "≥ 100,000", _at_least(100_000), _verify_rate),
        Goal(f"deliveries per commit at concurrency {c['saturation_level']} "
             "(`labledger_deliveries_per_commit`)", "reported", None, _per_commit, 1),
    ]  # fmt: skip


def _cell(goal: Goal, found: dict[str, Any] | float | None) -> list[str]:
    if found is None:
        return [NOT_MEASURED, DASH]
    value = found if isinstance(found, dict) else spread([found])
    if goal.check is None:
        return [describe(value, goal.digits), DASH]
    return [describe(value, goal.digits), "yes" if goal.check(value) else "**no**"]


def _scenario_rows(results: dict[str, Any], dialects: list[str]) -> list[list[str]]:
    """The goals a registered scenario reports: `{"goal", "target", "met", "values"}`."""
    rows = []
    for found in results.get("scenarios", {}).values():
        for goal in found.get("goals", []):
            row = [goal["goal"], goal["target"]]
            for dialect in dialects:
                value = goal["values"].get(dialect)
                met = goal.get("met", {}).get(dialect)
                shown = NOT_MEASURED if value is None else describe(value, goal.get("digits", 0))
                row += [shown, DASH if met is None else ("yes" if met else "**no**")]
            rows.append(row)
    return rows


def table(results: dict[str, Any]) -> list[str]:
    dialects = list(results["dialects"])
    rows = []
    for goal in issue_goals(results):
        row = [goal.name, goal.target]
        for dialect in dialects:
            row += _cell(goal, goal.find(results, dialect))
        rows.append(row)
    rows += _scenario_rows(results, dialects)
    header = ["target (issue 23)", "target"]
    for dialect in dialects:
        header += [DIALECTS[dialect], "met"]
    return [
        "## Against the targets",
        "",
        "Every figure below comes from this one run; a ratio compares targets measured "
        "seconds apart. Medians of the runs, (min-max) beside them.",
        "",
        *markdown_table(header, rows),
    ]
