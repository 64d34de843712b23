"""The report's "where the time goes": bench/profile.py's sampler in `labledger serve`
during one saturation level, on every database, as a registered scenario."""

from __future__ import annotations

import json
import logging
import os
import signal
import uuid
from pathlib import Path
from typing import Any

from bench.config import BenchConfig
from bench.databases import Databases
from bench.scenarios import saturation_level
from bench.targets import labledger_profiled

log = logging.getLogger("bench")
SHOWN = 10


def _percent(share: float) -> str:
    return f"{share * 100:.1f} %"


def _profile(config: BenchConfig, databases: Databases, dialect: str, scratch: Path) -> Any:
    out = scratch / f"profile-{dialect}-{uuid.uuid4().hex[:6]}.json"
    level = config.saturation_level
    with labledger_profiled(databases, dialect, config.all_repos, scratch, out) as target:
        os.kill(target.server.pid, signal.SIGUSR1)  # type: ignore[union-attr]
        phase = saturation_level(target, config, level, f"profile-{uuid.uuid4().hex[:6]}", None)
        os.kill(target.server.pid, signal.SIGUSR2)  # type: ignore[union-attr]
    return {**json.loads(out.read_text()), "deliveries_per_s": phase["deliveries_per_s"]}


def _tables(dialect: str, found: dict[str, Any]) -> list[dict[str, Any]]:
    name = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[dialect]
    packages = [[p["package"], _percent(p["share"])] for p in found["packages"][:SHOWN]]
    functions = [
        [f"`{f['function']}`", _percent(f["share"]), _percent(f["own"])]
        for f in found["cumulative"][:SHOWN]
    ]
    return [
        {
            "title": f"{name}: innermost frame by package ({found['samples']:,} busy samples)",
            "header": ["package", "share of busy samples"],
            "rows": packages,
        },
        {
            "title": f"{name}: functions by cumulative share",
            "header": ["function", "on the stack", "innermost"],
            "rows": functions,
        },
    ]


def measure(
    config: BenchConfig, databases: Databases, dialects: list[str], scratch: Path
) -> dict[str, Any]:
    profiles = {}
    for dialect in dialects:
        log.info("where the time goes: %s at concurrency %d", dialect, config.saturation_level)
        profiles[dialect] = _profile(config, databases, dialect, scratch)
    tables = [t for dialect, found in profiles.items() for t in _tables(dialect, found)]
    return {
        "title": "Where the time goes",
        "text": [
            f"`labledger serve` under a sampling profiler (bench/profile.py: every thread's "
            f"stack every {next(iter(profiles.values()))['interval_ms']:g} ms, threads waiting "
            f"for work left out) during one saturation level at concurrency "
            f"{config.saturation_level}. *On the stack*: the share of busy samples in which the "
            "function was running or waiting on a call it made; *innermost*: running itself "
            "(time inside C code, such as SQLite or a socket, counts for the Python function "
            "that called it, and a thread waiting to take the GIL back counts where it let "
            "it go)."
        ],
        "goals": [],
        "tables": tables,
        "profiles": profiles,
    }
