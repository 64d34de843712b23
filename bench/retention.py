"""`python -m bench.retention`: what retention costs on a large ledger (RETENTION.md).

Bulk-loads a ledger (bench/bulk.py), logs and integrates every row, then, as of 20 years
later (everything past its window), times in order:

- `retention plan`;
- `archive` (the whole log, one archive);
- `purge` (every row and body);
- `verify` of what is left (leaf hashes standing in for the purged rows);
- `erase` of one subject on a second, unpurged copy (`student1`, 100 attempts, 20 pushes).

Each figure is compared with `verify` over the same ledger before the purge, measured in the
same run: absolute times on a shared 2-core machine are noise, ratios hold.

    uv run python -m bench.retention [--attempts 100000] [--sqlite-only] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import bulk
from bench.databases import Databases
from bench.payloads import PUSHED_AT
from bench.tamper import _integrate_everything, _queue_everything
from labledger.core.note import SignerKey
from labledger.core.retention_rules import Windows
from labledger.services.archive import verify_archive, write_archive
from labledger.storage import migrate
from labledger.storage.engine import make_engine
from labledger.storage.erasure import erase
from labledger.storage.retention import purge
from labledger.storage.retention_plan import plan_retention
from labledger.storage.verification import verify_database

RESULTS = Path(__file__).parent / "results" / "retention.json"
LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
WINDOWS = Windows.of_days(records=1826, raw_bodies=90, audit=2557)


def _timed(action: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def _ledger(databases: Databases, dialect: str, attempts: int, signer: SignerKey) -> Any:
    database = databases.create(dialect, "retention")
    engine = make_engine(database.url)
    migrate.upgrade(engine)
    bulk.load(database, attempts)
    _queue_everything(engine)
    _integrate_everything(engine, signer)
    return database, engine


def measure(databases: Databases, dialect: str, attempts: int, scratch: Path) -> dict[str, Any]:
    signer = SignerKey.generate("labledger.bench/retention")
    key = signer.verifier
    later = datetime.fromtimestamp(PUSHED_AT, UTC) + timedelta(days=20 * 365)
    database, engine = _ledger(databases, dialect, attempts, signer)
    figures: dict[str, Any] = {"dialect": dialect, "attempts": attempts}
    try:
        before, verify_s = _timed(lambda: verify_database(engine, key))
        assert before.ok, before.problems[:3]
        entries = before.entries
        figures["entries"] = entries
        figures["verify_before_s"] = round(verify_s, 2)

        with engine.connect() as conn:
            plan, plan_s = _timed(lambda: plan_retention(conn, WINDOWS, later))
        figures["plan_s"] = round(plan_s, 2)
        figures["past_window_rows"] = sum(t.expired for t in plan.tables.values())

        folder = scratch / f"archive-{dialect}"
        manifest, archive_s = _timed(
            lambda: write_archive(engine, folder, key, before=later, actor="bench", now=later)
        )
        size = sum(p.stat().st_size for p in folder.iterdir())
        figures["archive_s"] = round(archive_s, 2)
        figures["archive_entries_per_s"] = round(manifest["end_leaf"] / archive_s)
        figures["archive_mb"] = round(size / 1e6, 1)
        offline, offline_s = _timed(lambda: verify_archive(folder, key))
        assert offline.ok, offline.problems[:3]
        figures["verify_archive_s"] = round(offline_s, 2)

        result, purge_s = _timed(lambda: purge(engine, WINDOWS, later, "bench"))
        removed = sum(result.removed.values()) + result.bodies_dropped
        figures["purge_s"] = round(purge_s, 2)
        figures["purged_rows_per_s"] = round(removed / purge_s)
        after, after_s = _timed(lambda: verify_database(engine, key))
        assert after.ok, after.problems[:3]
        figures["verify_after_purge_s"] = round(after_s, 2)
    finally:
        engine.dispose()
        databases.drop(database)

    database, engine = _ledger(databases, dialect, attempts, signer)
    try:
        erased, erase_s = _timed(
            lambda: erase(engine, subject_id="student1", reason="bench", actor="bench", now=later)
        )
        figures["erase_s"] = round(erase_s, 2)
        figures["erased"] = {"attempts": erased.attempts, "pushes": erased.pushes}
        after, after_s = _timed(lambda: verify_database(engine, key))
        assert after.ok, after.problems[:3]
    finally:
        engine.dispose()
        databases.drop(database)
    for name in ("plan_s", "archive_s", "purge_s", "erase_s", "verify_after_purge_s"):
        figures[f"{name[:-2]}_per_verify"] = round(figures[name] / figures["verify_before_s"], 2)
    figures["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.retention", description=__doc__)
    parser.add_argument("--attempts", type=int, default=100_000)
    parser.add_argument("--pg-url", default=os.environ.get("LABLEDGER_TEST_PG_URL", LOCAL_PG))
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    dialects = ["sqlite"] if args.sqlite_only else ["sqlite", "postgresql"]
    with tempfile.TemporaryDirectory(prefix="labledger-retention-") as tmp:
        databases = Databases(Path(tmp), None if args.sqlite_only else args.pg_url)
        try:
            runs = [measure(databases, d, args.attempts, Path(tmp)) for d in dialects]
        finally:
            databases.close()
    report = {"measured_at": datetime.now(UTC).isoformat(), "cpus": os.cpu_count(), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for run in runs:
        print(json.dumps(run))


if __name__ == "__main__":
    main()
