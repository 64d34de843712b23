"""Tamper evidence (issue 3): its ingest cost, `verify` and receipt speed, coverage delay.

- **On vs off**: `labledger serve` as shipped against the same build with the Merkle log
  switched off (bench/unlogged.py), closed loop at `tamper_level` concurrent writers, fresh
  servers and databases each run, the two interleaved (their order alternates run by run).
- **verify**: the bulk-loaded ledger of bench/bulk.py, every row queued for the log with one
  INSERT ... SELECT per table and integrated by labledger's own `SqlLog.integrate` in batches,
  then `verify_database` timed with and without re-hashing the raw bodies (worker processes
  as `labledger verify` starts them), and once more in a single process.
- **Receipts**: `SqlLog.receipt("attempt", id)` for random attempts of that ledger.
- **Coverage delay**: deliveries at a light, steady rate against `serve` with its default
  integrate interval; for each, the time from its 202 to the first 200 of its attempt's
  `GET /api/v1/attempts/{id}/proof` (409 until a checkpoint covers it), polled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import resource
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text

from bench import bulk, targets
from bench.config import SATURATION_REPOS, BenchConfig
from bench.databases import Databases, migrate_ledger
from bench.payloads import PUSHED_AT, get_request, post_request, signed_pushes
from bench.scenarios import saturate
from bench.servers import SECRET, TOKEN
from bench.stats import combine, latency_ms
from bench.targets import Target
from bench.wire import fetch
from labledger.config import Settings
from labledger.core.note import SignerKey
from labledger.storage.engine import WRITE_OPTION, make_engine
from labledger.storage.merkle_log import SqlLog
from labledger.storage.tables import log_entries
from labledger.storage.verification import verify_database

log = logging.getLogger("bench")
MODES = ("on", "off")
QUEUE_ORDER = (  # the bulk rows, queued for the log table by table
    ("session", "lab_sessions"),
    ("delivery", "deliveries"),
    ("push", "pushes"),
    ("attempt", "attempts"),
    ("audit", "audit_events"),
)
INTEGRATE_BATCH = 100_000
COVERAGE_LIMIT_S = 30.0
TAMPER_POOL = 3000  # deliveries prepared per phase: more than c=8 answers in one phase


def _maker(
    mode: str, databases: Databases, dialect: str, logs: Path
) -> Callable[[], AbstractContextManager[Target]]:
    repos = list(SATURATION_REPOS)
    make = targets.labledger if mode == "on" else targets.labledger_unlogged
    return partial(make, databases, dialect, repos, logs)


def _on_off_run(
    config: BenchConfig, databases: Databases, dialect: str, logs: Path, index: int
) -> dict[str, Any]:
    """One run: both targets on fresh servers and databases, in alternating order."""
    order = MODES if index % 2 == 0 else MODES[::-1]
    found: dict[str, Any] = {}
    for mode in order:
        with _maker(mode, databases, dialect, logs)() as target:
            count = min(config.pool_cap, TAMPER_POOL)
            pushes = signed_pushes(SECRET, SATURATION_REPOS, count, f"t{index}-{mode}-{dialect}")
            found[mode] = saturate(target, config, pushes, config.tamper_level)
            found[mode]["peak_rss_mb"] = target.peak_rss_mb()
        log.info(
            "  tamper %s run %d: %s %.0f/s", dialect, index + 1, mode,
            found[mode]["deliveries_per_s"],
        )  # fmt: skip
    off = found["off"]["deliveries_per_s"]
    found["on_over_off"] = found["on"]["deliveries_per_s"] / off if off else 0.0
    return found


def on_off(
    config: BenchConfig, databases: Databases, dialects: list[str], logs: Path
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {d: [] for d in dialects}
    for index in range(config.runs):  # runs outermost: the databases interleave too
        for dialect in dialects:
            runs[dialect].append(_on_off_run(config, databases, dialect, logs, index))
    return {dialect: combine(found) for dialect, found in runs.items()}


async def _covered_after(port: int, raw: bytes, start: float, poll_s: float) -> float | None:
    await asyncio.sleep(start)
    status, body = await fetch(port, raw)
    answered = time.perf_counter()
    if status != 202:
        return None
    attempt = json.loads(body)["attempt_ids"][0]
    proof = get_request(f"/api/v1/attempts/{attempt}/proof", port, TOKEN)
    while time.perf_counter() - answered < COVERAGE_LIMIT_S:
        status, _ = await fetch(port, proof)
        if status == 200:
            return time.perf_counter() - answered
        if status != 409:
            return None
        await asyncio.sleep(poll_s)
    return None


async def _coverage_phase(port: int, raws: list[bytes], rate: float, poll_s: float) -> list[Any]:
    jobs = [_covered_after(port, raw, i / rate, poll_s) for i, raw in enumerate(raws)]
    return list(await asyncio.gather(*jobs))


def coverage_delay(
    config: BenchConfig, databases: Databases, dialect: str, logs: Path
) -> dict[str, Any]:
    """From a delivery's 202 to the moment its first attempt's receipt can be fetched."""
    with _maker("on", databases, dialect, logs)() as target:
        pushes = signed_pushes(
            SECRET, SATURATION_REPOS, config.coverage_samples + 1, "cover-" + dialect
        )
        raws = [post_request(p, target.port) for p in pushes]
        # The first delivery, sent as soon as the server answers, waits for the integrator to
        # start as well (on PostgreSQL a process of its own, slow to start); the
        # measured ones follow once it is covered, so they show the steady state.
        first = asyncio.run(_covered_after(target.port, raws[0], 0.0, config.coverage_poll_s))
        found = asyncio.run(
            _coverage_phase(target.port, raws[1:], config.coverage_rate, config.coverage_poll_s)
        )
    delays = [d for d in found if d is not None]
    return {
        "first_after_start_ms": None if first is None else round(first * 1000, 1),
        "samples": len(found),
        "covered": len(delays),
        "offered_per_s": config.coverage_rate,
        "poll_s": config.coverage_poll_s,
        "integrate_interval_s": Settings.model_fields["integrate_interval_seconds"].default,
        **latency_ms(delays),
    }


def _queue_everything(engine: Engine) -> None:
    with engine.connect() as conn:
        conn = conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            for kind, table in QUEUE_ORDER:
                conn.execute(
                    text(
                        f"INSERT INTO log_queue (entry_type, entry_id) "
                        f"SELECT '{kind}', id FROM {table} ORDER BY id"
                    )
                )


def _integrate_everything(engine: Engine, signer: SignerKey) -> int:
    """labledger's integrator, batch after batch; checkpoints carry the rows' own time
    (the bulk rows are dated in the past, and a later-signed checkpoint would make every
    following row look back-dated)."""
    merkle = SqlLog(engine)
    moment = datetime.fromtimestamp(PUSHED_AT, UTC)
    batches = 0
    while merkle.integrate(signer, now=moment, limit=INTEGRATE_BATCH) is not None:
        batches += 1
    return batches


def _timed_verify(
    engine: Engine, signer: SignerKey, check_bodies: bool, processes: int | None = None
) -> dict[str, Any]:
    """One `verify_database` run: worker processes as `labledger verify` starts them (one
    per available CPU) unless `processes` is given."""
    started = time.perf_counter()
    cpu = _cpu_with_workers()
    # derive=False: the bulk rows share one raw body, so no delivery could have made them
    report = verify_database(
        engine, signer.verifier, check_bodies=check_bodies, processes=processes, derive=False
    )
    seconds = time.perf_counter() - started
    cpu = _cpu_with_workers() - cpu
    log.info(
        "  verify (bodies %s, processes %s): %.1f s, %.0f entries/s, %.1f s CPU with workers",
        check_bodies, processes or "auto", seconds, report.entries / seconds, cpu,
    )  # fmt: skip
    return {
        "seconds": round(seconds, 2),
        "entries": report.entries,
        "entries_per_s": round(report.entries / seconds, 1),
        # this process and its worker processes, not the database server's (PostgreSQL)
        "cpu_us_per_entry": round(cpu * 1e6 / max(report.entries, 1), 2),
        "intact": not report.problems,
        "problems": len(report.problems),
    }


def _cpu_with_workers() -> float:
    """CPU seconds of this process and of every child it has waited for (verify's workers)."""
    own, children = map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _receipts(engine: Engine, attempts: int, count: int) -> dict[str, Any]:
    merkle = SqlLog(engine)
    rng = random.Random(7)
    latencies = []
    for attempt in (rng.randint(1, attempts) for _ in range(count)):
        started = time.perf_counter()
        receipt = merkle.receipt("attempt", attempt)
        latencies.append(time.perf_counter() - started)
        if receipt.leaf_index >= receipt.tree_size:
            raise RuntimeError(f"receipt of attempt {attempt} is malformed")
    return {"count": count, **latency_ms(latencies)}


def _settle(engine: Engine) -> None:
    """Leave the freshly logged ledger as one that grew over a term would be when `verify`
    runs: on PostgreSQL vacuumed and analyzed, as autovacuum would have done long since
    (else the first read of each new log page sets its hint bits, and an autovacuum worker
    may start in the middle of a timing); on SQLite with the WAL written back into the
    database; then the machine's dirty pages written out (os.sync), so that the write-back of
    gigabytes just loaded does not run during the timing either."""
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM (ANALYZE)")
        else:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    os.sync()


def verify_benchmark(config: BenchConfig, databases: Databases, dialect: str) -> dict[str, Any]:
    """Bulk-load, log every row, then time `verify` (bodies off and on, `verify_rounds`
    times each, and once in a single process) and receipts."""
    database = databases.create(dialect, "verify")
    try:
        migrate_ledger(database)
        figures: dict[str, Any] = {"attempts": config.verify_attempts}
        figures["load_s"] = round(bulk.load(database, config.verify_attempts), 1)
        engine = make_engine(database.url)
        try:
            signer = SignerKey.generate("bench/verify")
            started = time.perf_counter()
            _queue_everything(engine)
            figures["batches"] = _integrate_everything(engine, signer)
            figures["log_s"] = round(time.perf_counter() - started, 1)
            with engine.connect() as conn:
                figures["entries"] = conn.execute(
                    select(func.count()).select_from(log_entries)
                ).scalar_one()
            log.info("  verify %s: %s entries logged", dialect, f"{figures['entries']:,}")
            _settle(engine)
            figures["processes"] = len(os.sched_getaffinity(0))
            timings: dict[str, list[dict[str, Any]]] = {"verify": [], "verify_with_bodies": []}
            for _ in range(config.verify_rounds):  # interleaved, so drift touches both alike
                for bodies, key in ((False, "verify"), (True, "verify_with_bodies")):
                    timings[key].append(_timed_verify(engine, signer, bodies))
            figures.update((key, combine(runs)) for key, runs in timings.items())
            # the same work in one process, for the gain of the workers in this same run
            figures["verify_one_process"] = combine([_timed_verify(engine, signer, False, 1)])
            figures["receipts"] = _receipts(engine, config.verify_attempts, config.receipts)
        finally:
            engine.dispose()
        return figures
    finally:
        databases.drop(database)


def measure_tamper(
    config: BenchConfig, databases: Databases, dialects: list[str], logs: Path
) -> dict[str, Any]:
    """Every tamper-evidence figure, on every database."""
    log.info("tamper evidence on vs off at %d writers, %d runs", config.tamper_level, config.runs)
    figures: dict[str, Any] = {"on_off": on_off(config, databases, dialects, logs)}
    figures["coverage"] = {}
    for dialect in dialects:
        log.info("coverage delay: %s", dialect)
        figures["coverage"][dialect] = coverage_delay(config, databases, dialect, logs)
    log.info("partial figures: %s", json.dumps(figures))  # kept in the log if later ones fail
    figures["verify"] = {}
    for dialect in dialects:
        log.info("verify at %s attempts: %s", f"{config.verify_attempts:,}", dialect)
        figures["verify"][dialect] = verify_benchmark(config, databases, dialect)
        log.info("partial figures: %s", json.dumps(figures["verify"][dialect]))
    return figures
