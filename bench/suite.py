"""The whole suite: every target on every database, repeated; then the reads, tamper evidence
and every registered scenario; then the report.

A benchmark of its own joins the suite with one line in SCENARIOS: a `Scenario(name,
measure)` whose `measure(config, databases, dialects, scratch)` returns the part of
latest.json kept under `scenarios.<name>`: `{"title", "text": [...], "goals": [{"goal",
"target", "values": {dialect: number}, "met": {dialect: bool}}], "tables": [{"title",
"header", "rows"}]}` and anything else it wants kept. The report shows its goals in the
targets table and its text and tables in a section of its own; `python -m bench full --only
NAME` measures it alone and merges it into the existing results.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import labledger
from bench import arenas, targets, ui_overview, where_time_goes
from bench import results as result_file
from bench.calibrate import generator_cost
from bench.config import SATURATION_REPOS, BenchConfig
from bench.databases import Databases
from bench.payloads import get_request
from bench.plot import plot
from bench.procstat import load_average, machine
from bench.reads import read_benchmark
from bench.report import render
from bench.scenarios import burst, duplicate_storm, offered_rate, saturation_level
from bench.servers import ROOT, TOKEN
from bench.stats import combine
from bench.tamper import measure_tamper, verify_benchmark
from bench.targets import Target
from bench.wire import fetch

log = logging.getLogger("bench")
# The second open loop offers this share of the naive stack's best rate in the same run: a
# latency both servers can be compared at on a host too slow to carry the fixed rate.
RELAXED_SHARE = 0.5
SCRATCH = ROOT / "bench" / "results" / "tmp"  # on the real disk: SQLite's fsyncs must count
PER_COMMIT = "labledger_deliveries_per_commit"  # the writer's histogram in /metrics


@dataclass(frozen=True, slots=True)
class Scenario:
    """A benchmark measured after the write runs, kept under `scenarios.<name>`."""

    name: str
    measure: Callable[[BenchConfig, Databases, list[str], Path], dict[str, Any]]


SCENARIOS = (
    Scenario("where_time_goes", where_time_goes.measure),
    Scenario("malloc_arenas", arenas.measure),
    Scenario("ui_overview", ui_overview.measure),
)


def _commit_histogram(target: Target) -> tuple[float, float] | None:
    """The sum and count of the deliveries-per-commit histogram, or None without one."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        status, body = asyncio.run(fetch(target.port, get_request("/metrics", target.port, TOKEN)))
    except OSError:  # the report then says "not measured"
        return None
    if status != 200:
        return None
    for family in text_string_to_metric_families(body.decode()):
        if family.name == PER_COMMIT:
            total = sum(s.value for s in family.samples if s.name == PER_COMMIT + "_sum")
            count = sum(s.value for s in family.samples if s.name == PER_COMMIT + "_count")
            return total, count
    return None


def _per_commit(before: tuple[float, float] | None, after: tuple[float, float] | None) -> Any:
    """Deliveries per commit over one phase: what group commit gathered, or None."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]), 3)


def _write_scenarios(
    make: Callable[[], AbstractContextManager[Target]], config: BenchConfig, nonce: str
) -> dict[str, Any]:
    """Every write scenario against one target on its own (the HTTP bound)."""
    with make() as target:
        return _interleaved([target], config, nonce, 0)[target.name]


def _interleaved(
    started: list[Target], config: BenchConfig, nonce: str, index: int
) -> dict[str, dict[str, Any]]:
    """Every write scenario against each target, step by step: each concurrency level, then
    the offered rate, the burst and the storm, taken by every target in turn before the next
    step, so that the figures a ratio compares were measured seconds apart, not minutes (the
    host's speed drifts). The order rotates run by run, so no target always goes first."""
    shift = index % len(started)
    order = started[shift:] + started[:shift]
    figures: dict[str, dict[str, Any]] = {t.name: {"saturation": {}} for t in started}
    last_rate: dict[str, float | None] = dict.fromkeys(figures)
    for level in config.levels:
        for target in order:
            log.info("  %s: saturation at concurrency %d", target.name, level)
            scrape = target.name == "labledger" and level == config.saturation_level
            before = _commit_histogram(target) if scrape else None
            found = saturation_level(
                target, config, level, f"{nonce}-sat{level}", last_rate[target.name]
            )
            if scrape:
                per_commit = _per_commit(before, _commit_histogram(target))
                figures[target.name]["deliveries_per_commit"] = per_commit
            figures[target.name]["saturation"][str(level)] = found
            last_rate[target.name] = found["deliveries_per_s"]
    servers = [t for t in order if t.server is not None]
    for target in servers:
        log.info("  %s: %g deliveries/s offered", target.name, config.rate)
        figures[target.name]["rate"] = offered_rate(target, config, nonce + "-rate")
    ledgers = [t for t in servers if t.name in ("labledger", "naive")]
    if "naive" in figures:  # a rate both servers carry on this host, whatever its speed
        best = max(f["deliveries_per_s"] for f in figures["naive"]["saturation"].values())
        relaxed = replace(config, rate=round(RELAXED_SHARE * best, 1))
        for target in ledgers:
            log.info("  %s: %g deliveries/s offered", target.name, relaxed.rate)
            found = offered_rate(target, relaxed, nonce + "-relaxed")
            figures[target.name]["relaxed_rate"] = found
    for target in ledgers:
        log.info("  %s: deadline burst", target.name)
        figures[target.name]["burst"] = burst(target, config, nonce + "-burst")
    for target in ledgers:
        log.info("  %s: duplicate storm", target.name)
        figures[target.name]["duplicate_storm"] = duplicate_storm(target, config, nonce + "-storm")
    for target in servers:
        if target.name == "http_bound":
            log.info("  generator cost: raw client and httpx2")
            figures[target.name]["generator_calibration"] = generator_cost(target, config)
        figures[target.name]["peak_rss_mb"] = target.peak_rss_mb()
    return figures


def _one_run(
    config: BenchConfig, databases: Databases, dialects: list[str], logs: Path, index: int
) -> dict[str, Any]:
    nonce = f"run{index}-{uuid.uuid4().hex[:8]}"
    log.info("run %d of %d: HTTP bound", index + 1, config.runs)
    run = {
        "http_bound": _write_scenarios(lambda: targets.http_bound(databases, logs), config, nonce)
    }
    repos = config.all_repos
    for dialect in dialects:
        log.info("run %d of %d: %s", index + 1, config.runs, dialect)
        makers = (
            partial(targets.labledger, databases, dialect, repos, logs),
            partial(targets.naive, databases, dialect, repos, logs),
            partial(targets.db_bound, databases, dialect, list(SATURATION_REPOS)),
        )
        with ExitStack() as running:  # all three up at once; the idle ones cost nothing
            started = [running.enter_context(make()) for make in makers]
            run[dialect] = _interleaved(started, config, nonce, index)
    return run


def provenance() -> dict[str, str]:
    """Which labledger was measured: the repository's HEAD and the package actually imported."""
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    source = Path(labledger.__file__).resolve().parent
    return {"git_head": head.stdout.strip() or "unknown", "labledger_source": str(source)}


def measure_everything(
    config: BenchConfig, dialects: list[str], pg_admin_url: str | None
) -> dict[str, Any]:
    """Run the suite; every server is stopped and every database dropped, even on failure."""
    scratch = SCRATCH / uuid.uuid4().hex[:10]
    scratch.mkdir(parents=True)
    databases = Databases(scratch, pg_admin_url)
    started = time.time()
    info = {
        **machine(),
        **provenance(),
        "postgresql": databases.server_version() if "postgresql" in dialects else None,
    }
    try:
        runs = [_one_run(config, databases, dialects, scratch, i) for i in range(config.runs)]
        reads = _reads(config, databases, dialects, scratch)
        tamper = measure_tamper(config, databases, dialects, scratch)
        scenarios = {s.name: s.measure(config, databases, dialects, scratch) for s in SCENARIOS}
    finally:
        databases.close()
        shutil.rmtree(scratch, ignore_errors=True)
    info["load_average_at_end"] = load_average()
    return {
        "schema": result_file.SCHEMA,
        "mode": config.mode,
        "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "duration_s": round(time.time() - started, 1),
        "machine": info,
        "config": asdict(config),
        "dialects": dialects,
        "writes": combine(runs),
        "interleaving": "step",  # see _interleaved
        "reads": reads,
        "tamper": {**tamper, "measured_with_the_suite": True},
        "scenarios": scenarios,
        "pending": {},
    }


@contextmanager
def _measuring_apart(
    pg_admin_url: str | None,
) -> Iterator[tuple[Databases, Path, dict[str, Any]]]:
    """Scratch databases for figures measured apart from the suite, always dropped; once the
    block has run, the dict it was given says when, for how long and on which machine and
    source they were measured."""
    scratch = SCRATCH / uuid.uuid4().hex[:10]
    scratch.mkdir(parents=True)
    databases = Databases(scratch, pg_admin_url)
    started = time.time()
    info = {**machine(), **provenance()}
    measured: dict[str, Any] = {}
    try:
        yield databases, scratch, measured
    finally:
        databases.close()
        shutil.rmtree(scratch, ignore_errors=True)
    info["load_average_at_end"] = load_average()
    measured.update(
        started_at=datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        duration_s=round(time.time() - started, 1),
        machine=info,
    )


def measure_tamper_only(
    config: BenchConfig, dialects: list[str], pg_admin_url: str | None, previous: dict[str, Any]
) -> dict[str, Any]:
    """Only the tamper-evidence scenarios, merged into `previous` (an earlier full result).

    Their ratios compare targets measured in this same run; the machine and source they ran
    on are recorded beside them, since they may differ from the rest of the file's.
    """
    with _measuring_apart(pg_admin_url) as (databases, scratch, measured):
        tamper = measure_tamper(config, databases, dialects, scratch)
    tamper.update(
        measured_with_the_suite=False,
        **measured,
        config={k: v for k, v in asdict(config).items() if k in result_file.TAMPER_CONFIG},
    )
    merged = {**previous, "tamper": tamper, "pending": {}}
    own = {
        k: v
        for k, v in tamper["config"].items()
        if k not in previous["config"]
        or k.startswith(("tamper_", "verify_", "receipts", "coverage_"))
    }  # runs etc. stay the suite's
    merged["config"] = {**previous["config"], **own}
    return merged


def measure_only(
    part: str,
    config: BenchConfig,
    dialects: list[str],
    pg_admin_url: str | None,
    previous: dict[str, Any],
) -> dict[str, Any]:
    """Only the `verify` figures (with receipts) or only the `reads`, merged into `previous`;
    each measured dialect records when, on which machine and source it ran."""
    with _measuring_apart(pg_admin_url) as (databases, scratch, measured):
        if part == "verify":
            found = {}
            for dialect in dialects:
                log.info("verify at %s attempts: %s", f"{config.verify_attempts:,}", dialect)
                found[dialect] = verify_benchmark(config, databases, dialect)
        else:
            found = _reads(config, databases, dialects, scratch)
    stamped = {dialect: {**figures, "measured": measured} for dialect, figures in found.items()}
    merged = {**previous, "config": dict(previous["config"])}
    if part == "verify":
        tamper = previous["tamper"]
        merged["tamper"] = {**tamper, "verify": {**tamper["verify"], **stamped}}
        merged["config"]["verify_attempts"] = config.verify_attempts
        merged["config"]["verify_rounds"] = config.verify_rounds
        merged["config"]["receipts"] = config.receipts
    else:
        merged["reads"] = {**previous["reads"], **stamped}
        merged["config"]["read_attempts"] = config.read_attempts
    return merged


def measure_scenario(
    name: str,
    config: BenchConfig,
    dialects: list[str],
    pg_admin_url: str | None,
    previous: dict[str, Any],
) -> dict[str, Any]:
    """One registered scenario alone, merged into `previous`; it records when and where."""
    scenario = next(s for s in SCENARIOS if s.name == name)
    with _measuring_apart(pg_admin_url) as (databases, scratch, measured):
        found = scenario.measure(config, databases, dialects, scratch)
    found["measured"] = measured
    return {**previous, "scenarios": {**previous.get("scenarios", {}), name: found}}


def _reads(
    config: BenchConfig, databases: Databases, dialects: list[str], scratch: Path
) -> dict[str, Any]:
    found = {}
    for dialect in dialects:
        log.info("reads at %s attempts: %s", f"{config.read_attempts:,}", dialect)
        found[dialect] = read_benchmark(config, databases, dialect, scratch)
    return found


def publish(results: dict[str, Any], out_dir: Path, markdown: Path) -> None:
    """Write latest.json, the plot and the Markdown report; the JSON is checked first."""
    result_file.validate(results)
    result_file.write(results, out_dir / "latest.json")
    png = out_dir / "throughput.png"
    link = os.path.relpath(png, markdown.parent) if plot(results, png) else None
    if link is None:
        log.warning("no plot: matplotlib is missing (uv sync --all-groups installs it)")
    markdown.write_text(render(results, link))
    log.info("wrote %s, %s and %s", out_dir / "latest.json", png, markdown)
