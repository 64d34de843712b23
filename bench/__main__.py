"""`python -m bench full|smoke|report`: run the benchmark suite and write its results.

    uv run python -m bench full     # 3 runs, SQLite and PostgreSQL, 1M-attempt reads (`make bench`)
    uv run python -m bench smoke    # tiny sizes: checks the suite still runs end to end
    uv run python -m bench report   # re-render the plot and BENCHMARKS.md from latest.json
    uv run python -m bench full --only tamper   # only tamper evidence, merged into the
                                                # existing latest.json and BENCHMARKS.md
    uv run python -m bench full --only verify   # only `verify` and receipts, merged likewise
    uv run python -m bench full --only reads    # only the read benchmark, merged likewise
    uv run python -m bench full --only NAME     # only a registered scenario (bench/suite.py)

PostgreSQL: `--pg-url`, else LABLEDGER_TEST_PG_URL, else (full only) the local server at
postgresql://postgres@127.0.0.1:5432/postgres. Smoke uses PostgreSQL only when one is given.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from types import FrameType

from bench.config import FULL, SMOKE, BenchConfig
from bench.databases import pg_reachable
from bench.results import validate
from bench.servers import ROOT
from bench.suite import (
    SCENARIOS,
    measure_everything,
    measure_only,
    measure_scenario,
    measure_tamper_only,
    publish,
)

LOCAL_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
log = logging.getLogger("bench")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("suite", choices=("full", "smoke", "report"))
    parser.add_argument("--out", type=Path, help="folder for latest.json and throughput.png")
    parser.add_argument("--markdown", type=Path, help="where to write the Markdown report")
    parser.add_argument("--pg-url", help="PostgreSQL admin URL (databases are made and dropped)")
    parser.add_argument("--sqlite-only", action="store_true", help="skip PostgreSQL")
    parser.add_argument("--runs", type=int, help="override the number of runs")
    parser.add_argument(
        "--verify-attempts", type=int, help="override the bulk load `verify` is timed over"
    )
    parser.add_argument(
        "--only",
        choices=("tamper", "verify", "reads", *(s.name for s in SCENARIOS)),
        help="run only these scenarios and merge them into the existing latest.json",
    )
    return parser.parse_args(argv)


def _dialects(args: argparse.Namespace, config: BenchConfig) -> tuple[list[str], str | None]:
    url = args.pg_url or os.environ.get("LABLEDGER_TEST_PG_URL")
    if url is None and config.mode == "full":
        url = LOCAL_PG
    if args.sqlite_only or url is None:
        return ["sqlite"], None
    if not pg_reachable(url):
        if config.mode == "full" or os.environ.get("CI") == "true":
            raise SystemExit(f"bench: PostgreSQL at {url} is unreachable (or use --sqlite-only)")
        log.warning("PostgreSQL at %s is unreachable: smoke runs on SQLite only", url)
        return ["sqlite"], None
    return ["sqlite", "postgresql"], url


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the finally blocks: servers stop, databases drop


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    for noisy in ("alembic", "httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    args = _arguments(argv)
    if args.suite == "report":
        out = args.out or (ROOT / "bench" / "results")
        publish(
            json.loads((out / "latest.json").read_text()),
            out,
            args.markdown or ROOT / "BENCHMARKS.md",
        )
        return 0
    config = FULL if args.suite == "full" else SMOKE
    if args.runs:
        config = replace(config, runs=args.runs)
    if args.verify_attempts:
        config = replace(config, verify_attempts=args.verify_attempts)
    scratch = "" if config.mode == "full" else "tmp/smoke"  # smoke output stays out of git
    out = args.out or (ROOT / "bench" / "results" / scratch)
    markdown = args.markdown or (
        ROOT / "BENCHMARKS.md" if config.mode == "full" else out / "BENCHMARKS.md"
    )
    dialects, pg_url = _dialects(args, config)
    if args.only == "tamper":
        previous = json.loads((out / "latest.json").read_text())
        publish(measure_tamper_only(config, dialects, pg_url, previous), out, markdown)
    elif args.only in ("verify", "reads"):
        previous = json.loads((out / "latest.json").read_text())
        publish(measure_only(args.only, config, dialects, pg_url, previous), out, markdown)
    elif args.only is not None:
        previous = json.loads((out / "latest.json").read_text())
        publish(measure_scenario(args.only, config, dialects, pg_url, previous), out, markdown)
    else:
        publish(measure_everything(config, dialects, pg_url), out, markdown)
    validate(json.loads((out / "latest.json").read_text()))  # what readers get is well formed
    return 0


if __name__ == "__main__":
    sys.exit(main())
