"""The web view's lab overview at course scale: 1,000 sessions holding 100,000 attempts.

The ledger is bulk-loaded (bench/bulk.py), a tenth of each session's attempts moved past the
due date and some pushes marked as force-pushes, so the summaries have lateness and marks to
show. Then `GET /ui/labs/{lab}` is asked for repeatedly by a signed-in viewer through the
application in-process: the figure is the time to answer it, database reads and HTML
rendering included, against the target (issue 26).

    uv run python -m bench.ui_overview [--pg-url URL] [--attempts N] [--rounds N]

As a registered scenario of the suite, `measure` returns the part of latest.json kept under
`scenarios.ui_overview`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select, update

from bench import bulk
from bench.config import BenchConfig
from bench.databases import Database, Databases, migrate_ledger, pg_reachable
from labledger.config import Settings
from labledger.core.note import SignerKey
from labledger.http.app import create_app
from labledger.storage.engine import make_engine
from labledger.storage.maintenance import maintenance
from labledger.storage.sql_store import SqlStore
from labledger.storage.tables import attempts, pushes

log = logging.getLogger("bench")
TARGET_MS = 300.0
ATTEMPTS = 100_000  # 1,000 sessions of bulk.PER_SESSION attempts
ROUNDS = 30
LAB = "lab-3"  # bulk.py's lab
TOKEN = "read:ui-overview-bench-token-0000000000001"
NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def _marks(database: Database, size: int) -> None:
    """Lateness and force-pushes for the overview to show: every tenth delivery pushed after
    the due date, every fiftieth push a force-push that rewrote history, one in a hundred
    a gap in its repository's push chain. A throw-away ledger
    is changed in place through the one path past the append-only rules."""
    engine = make_engine(database.url)
    late = datetime(2025, 12, 2, tzinfo=UTC)
    try:
        with maintenance(engine, ("attempts", "pushes")) as conn:
            conn.execute(
                update(attempts).where(attempts.c.delivery_pk % 10 == 0).values(pushed_at=late)
            )
            conn.execute(update(pushes).where(pushes.c.id % 50 == 0).values(forced=True))
            # Chain each repository's pushes (bulk.py leaves every one a gap), but for one
            # push in a hundred: the overview shows a course's few gaps, not thousands.
            sessions = bulk.Layout(size).sessions
            previous = pushes.alias("previous")
            conn.execute(
                update(pushes)
                .where(pushes.c.id > sessions, pushes.c.id % 100 != 0)
                .values(
                    before_sha=select(previous.c.after_sha)
                    .where(previous.c.id == pushes.c.id - sessions)
                    .scalar_subquery()
                )
            )
        if database.dialect == "postgresql":
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()


def _timed(database: Database, rounds: int) -> dict[str, Any]:
    """Milliseconds per overview answer, after one warming request."""
    settings = Settings.model_validate({"api_tokens": TOKEN, "ui_secret_key": "u" * 40})
    engine = make_engine(database.url)
    try:
        app = create_app(settings, SqlStore(engine), SignerKey.generate("labledger.bench/ui"))
        with TestClient(app) as client:
            form = client.get("/ui/sign-in")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert csrf is not None, "no sign-in form"
            token = TOKEN.split(":", 1)[1]
            client.post("/ui/sign-in", data={"token": token, "csrf": csrf.group(1)})
            first = client.get(f"/ui/labs/{LAB}")
            assert first.status_code == 200, first.status_code
            rows = first.text.count("<tr data-marks=")
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                answer = client.get(f"/ui/labs/{LAB}")
                times.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200
    finally:
        engine.dispose()
    times.sort()
    return {
        "sessions_shown": rows,
        "median_ms": round(statistics.median(times), 1),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 1),
        "rounds": rounds,
    }


def overview(databases: Databases, dialect: str, attempts: int, rounds: int) -> dict[str, Any]:
    database = databases.create(dialect, "ui_overview")
    try:
        migrate_ledger(database)
        log.info("ui overview: loading %s attempts on %s", f"{attempts:,}", dialect)
        bulk.load(database, attempts)
        _marks(database, attempts)
        found = _timed(database, rounds)
        return {**found, "attempts": attempts, "sessions": bulk.Layout(attempts).sessions}
    finally:
        databases.drop(database)


def _result(figures: dict[str, dict[str, Any]]) -> dict[str, Any]:
    any_figure = next(iter(figures.values()))
    return {
        "title": "Lab overview in the web view",
        "text": [
            f"`GET /ui/labs/{{lab}}` for a lab of {any_figure['sessions']:,} sessions holding "
            f"{any_figure['attempts']:,} attempts, answered in-process to a signed-in viewer "
            f"({any_figure['rounds']} requests after a warming one): the summaries' reads and "
            "the HTML together."
        ],
        "goals": [
            {
                "goal": f"lab overview, {any_figure['sessions']:,} sessions / "
                f"{any_figure['attempts']:,} attempts (median ms)",
                "target": f"<= {TARGET_MS:g} ms at {ATTEMPTS:,} attempts",
                "values": {d: f["median_ms"] for d, f in figures.items()},
                # The target is set for the full size only; a smoke run's figure says nothing.
                "met": {
                    d: f["median_ms"] <= TARGET_MS
                    for d, f in figures.items()
                    if f["attempts"] == ATTEMPTS
                },
            }
        ],
        "tables": [
            {
                "title": "Lab overview answer times",
                "header": ["database", "sessions", "attempts", "median ms", "p95 ms"],
                "rows": [
                    [
                        NAMES[d],
                        f"{f['sessions_shown']:,}",
                        f"{f['attempts']:,}",
                        f"{f['median_ms']:.1f}",
                        f"{f['p95_ms']:.1f}",
                    ]
                    for d, f in figures.items()
                ],
            }
        ],
        "figures": figures,
    }


def measure(
    config: BenchConfig, databases: Databases, dialects: list[str], scratch: Path
) -> dict[str, Any]:
    """The suite's entry: the full size in a full run, a small one in a smoke run."""
    attempts, rounds = (ATTEMPTS, ROUNDS) if config.mode == "full" else (2_000, 3)
    return _result({d: overview(databases, d, attempts, rounds) for d in dialects})


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(prog="python -m bench.ui_overview", description=__doc__)
    parser.add_argument("--pg-url", default=os.environ.get("LABLEDGER_TEST_PG_URL"))
    parser.add_argument("--attempts", type=int, default=ATTEMPTS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args(argv)
    dialects = ["sqlite"]
    if args.pg_url and pg_reachable(args.pg_url):
        dialects.append("postgresql")
    with tempfile.TemporaryDirectory(prefix="ui-overview-") as scratch:
        databases = Databases(Path(scratch), args.pg_url)
        try:
            found = _result(
                {d: overview(databases, d, args.attempts, args.rounds) for d in dialects}
            )
        finally:
            databases.close()
    for dialect, f in found["figures"].items():
        verdict = "met" if f["median_ms"] <= TARGET_MS else "NOT met"
        print(
            f"{NAMES[dialect]}: lab overview of {f['sessions_shown']:,} sessions / "
            f"{f['attempts']:,} attempts: median {f['median_ms']} ms, p95 {f['p95_ms']} ms "
            f"(target <= {TARGET_MS:g} ms: {verdict})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
