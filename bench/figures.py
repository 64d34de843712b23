"""Derived figures and cell formatting shared by the report's tables."""

from __future__ import annotations

from typing import Any

from bench.stats import is_spread, spread

NAMES = {
    "labledger": "labledger",
    "naive": "naive stack (FastAPI, plain inserts)",
    "http_bound": "HTTP bound (Starlette, no storage)",
    "db_bound": "DB bound (driver only, no HTTP)",
}
DIALECTS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}
DASH = "\N{EN DASH}"  # empty cells and ranges in the tables


def best_per_run(saturation: dict[str, Any], figure: str = "deliveries_per_s") -> list[float]:
    """For each run, the highest rate any concurrency level reached."""
    levels = list(saturation.values())
    runs = len(levels[0][figure]["runs"])
    return [max(level[figure]["runs"][i] for level in levels) for i in range(runs)]


def targets_of(results: dict[str, Any], dialect: str) -> dict[str, Any]:
    """Each write target's figures on one database (the HTTP bound has no database)."""
    writes = results["writes"]
    return {
        "labledger": writes[dialect]["labledger"],
        "naive": writes[dialect]["naive"],
        "http_bound": writes["http_bound"],
        "db_bound": writes[dialect]["db_bound"],
    }


def ratio(results: dict[str, Any], dialect: str, baseline: str) -> dict[str, Any]:
    """labledger's best deliveries/s over the baseline's, run by run."""
    found = targets_of(results, dialect)
    ours = best_per_run(found["labledger"]["saturation"])
    theirs = best_per_run(found[baseline]["saturation"])
    return _run_by_run(ours, theirs)


def ratio_at(results: dict[str, Any], dialect: str, baseline: str, level: str) -> dict[str, Any]:
    """labledger's deliveries/s over the baseline's at one concurrency level, run by run."""
    found = targets_of(results, dialect)
    ours = found["labledger"]["saturation"][level]["deliveries_per_s"]["runs"]
    theirs = found[baseline]["saturation"][level]["deliveries_per_s"]["runs"]
    return _run_by_run(ours, theirs)


def _run_by_run(ours: list[float], theirs: list[float]) -> dict[str, Any]:
    """The spread of ours ÷ theirs, run by run (0 where theirs is 0)."""
    return spread([a / b if b else 0.0 for a, b in zip(ours, theirs, strict=True)])


def describe(value: Any, digits: int = 0) -> str:
    """`median (min-max)` for a spread, the plain value otherwise."""
    if is_spread(value):
        low, high = value["min"], value["max"]
        middle = f"{value['median']:,.{digits}f}"
        return middle if low == high else f"{middle} ({low:,.{digits}f}{DASH}{high:,.{digits}f})"
    if value is None:
        return DASH
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:,.{digits}f}"
    return str(value)


def median(value: Any) -> float | None:
    return value["median"] if is_spread(value) else None


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]
