"""The machine-readable result file: its shape, and a check that a file has that shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.stats import is_spread

SCHEMA = "labledger-bench/1"
PENDING = "pending tamper-evidence issue"
WRITE_TARGETS = ("labledger", "naive", "db_bound")
HTTP_SCENARIOS = ("saturation", "rate")
STORED_SCENARIOS = ("burst", "duplicate_storm")
READ_KINDS = ("session_page", "commit_lookup", "delivery_lookup")
TAMPER_CONFIG = ("runs", "warmup_s", "measure_s", "tamper_level", "verify_attempts",
                 "verify_rounds", "receipts", "coverage_samples", "coverage_rate",
                 "coverage_poll_s")  # fmt: skip


class MalformedResults(ValueError):
    """The result file lacks something the report and its readers rely on."""


def write(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")


def _need(data: dict[str, Any], *path: str) -> Any:
    node: Any = data
    for step, key in enumerate(path):
        if not isinstance(node, dict) or key not in node:
            raise MalformedResults("missing " + ".".join(path[: step + 1]))
        node = node[key]
    return node


def _need_spread(data: dict[str, Any], *path: str) -> None:
    value = _need(data, *path)
    if not is_spread(value) or not all(isinstance(v, int | float) for v in value["runs"]):
        raise MalformedResults(".".join(path) + " is not a median/min/max of numeric runs")


def validate(results: dict[str, Any]) -> None:
    """Raise MalformedResults unless every figure the report uses is present and numeric."""
    if _need(results, "schema") != SCHEMA:
        raise MalformedResults(f"schema is not {SCHEMA}")
    for key in ("mode", "machine", "config", "started_at", "duration_s", "pending"):
        _need(results, key)
    levels = [str(level) for level in _need(results, "config", "levels")]
    writes = _need(results, "writes")
    for level in levels:
        _need_spread(writes, "http_bound", "saturation", level, "deliveries_per_s")
    _need_spread(writes, "http_bound", "rate", "p99_ms")
    for client in ("raw", "httpx2"):
        _need_spread(
            writes, "http_bound", "generator_calibration", client, "generator_cpu_ms_per_request"
        )
    for dialect in _need(results, "dialects"):
        _validate_dialect(results, dialect, levels)
    if "tamper" in results:
        validate_tamper(results["tamper"], _need(results, "dialects"))
    for name, found in results.get("scenarios", {}).items():
        validate_scenario(name, found)


def validate_scenario(name: str, found: dict[str, Any]) -> None:
    """A registered scenario's part: a title, goals and tables as the report renders them."""
    _need(found, "title")
    for goal in _need(found, "goals"):
        for key in ("goal", "target", "values"):
            _need(goal, key)
    for table in _need(found, "tables"):
        width = len(_need(table, "header"))
        if any(len(row) != width for row in _need(table, "rows")):
            raise MalformedResults(
                f"scenarios.{name}: a row of {table['title']!r} is not as wide as its header"
            )


def validate_tamper(tamper: dict[str, Any], dialects: list[str]) -> None:
    """The tamper-evidence figures: on vs off, verify, receipts, coverage delay."""
    for dialect in dialects:
        for mode in ("on", "off"):
            _need_spread(tamper, "on_off", dialect, mode, "deliveries_per_s")
        _need_spread(tamper, "on_off", dialect, "on_over_off")
        for key in ("samples", "covered", "p50_ms", "p99_ms"):
            _need(tamper, "coverage", dialect, key)
        for key in ("verify", "verify_with_bodies"):
            _need_spread(tamper, "verify", dialect, key, "entries_per_s")
            _need(tamper, "verify", dialect, key, "intact")
        for key in ("p50_ms", "p99_ms"):
            _need(tamper, "verify", dialect, "receipts", key)
        _need(tamper, "verify", dialect, "entries")


def _validate_dialect(results: dict[str, Any], dialect: str, levels: list[str]) -> None:
    writes = results["writes"]
    for target in WRITE_TARGETS:
        for level in levels:
            for figure in ("deliveries_per_s", "attempts_per_s", "p99_ms"):
                _need_spread(writes, dialect, target, "saturation", level, figure)
    for target in ("labledger", "naive"):
        _need_spread(writes, dialect, target, "rate", "p99_ms")
        _need_spread(writes, dialect, target, "burst", "drain_s")
        _need_spread(writes, dialect, target, "duplicate_storm", "record_sets")
        _need_spread(writes, dialect, target, "peak_rss_mb")
    for layer in ("http", "store", "sql"):
        for kind in READ_KINDS:
            _need_spread(results, "reads", dialect, layer, kind, "p99_ms")
    _need(results, "reads", dialect, "verified")
