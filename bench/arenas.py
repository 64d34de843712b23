"""Whether `serve --malloc-arenas` still pays: peak server RSS and p99 through a saturation
level and a deadline burst, with glibc's arenas capped (as shipped) and uncapped, the two
taking turns on a fresh database each, as a registered scenario."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

from bench.config import BenchConfig
from bench.databases import Databases
from bench.figures import DIALECTS, describe
from bench.scenarios import burst, saturation_level
from bench.stats import combine, spread
from bench.targets import labledger

log = logging.getLogger("bench")
VARIANTS = {"capped": ("--malloc-arenas", "2"), "uncapped": ("--malloc-arenas", "0")}
ROUNDS = 2  # the order alternates, so each variant goes first once


def _one(
    config: BenchConfig, databases: Databases, dialect: str, scratch: Path, variant: str
) -> dict[str, Any]:
    options = VARIANTS[variant]
    with labledger(databases, dialect, config.all_repos, scratch, *options) as target:
        nonce = f"arenas-{uuid.uuid4().hex[:6]}"
        level = saturation_level(target, config, config.saturation_level, nonce + "s", None)
        drained = burst(target, config, nonce + "b")
        return {
            "saturation_p99_ms": level["p99_ms"],
            "burst_p99_ms": drained["p99_ms"],
            "peak_rss_mb": target.peak_rss_mb(),
        }


def _dialect(config: BenchConfig, databases: Databases, dialect: str, scratch: Path) -> Any:
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
    for index in range(ROUNDS):
        order = list(VARIANTS) if index % 2 == 0 else list(reversed(VARIANTS))
        for variant in order:
            log.info("malloc arenas: %s, %s", dialect, variant)
            runs[variant].append(_one(config, databases, dialect, scratch, variant))
    found = {variant: combine(figures) for variant, figures in runs.items()}
    ratios = [
        capped["peak_rss_mb"] / uncapped["peak_rss_mb"]
        for capped, uncapped in zip(runs["capped"], runs["uncapped"], strict=True)
    ]
    return {**found, "rss_capped_over_uncapped": spread(ratios)}


def measure(
    config: BenchConfig, databases: Databases, dialects: list[str], scratch: Path
) -> dict[str, Any]:
    found = {d: _dialect(config, databases, d, scratch) for d in dialects}
    rows = [
        [DIALECTS[d], variant, describe(f[variant]["peak_rss_mb"], 0),
         describe(f[variant]["saturation_p99_ms"], 1), describe(f[variant]["burst_p99_ms"], 1)]
        for d, f in found.items()
        for variant in VARIANTS
    ]  # fmt: skip
    ratio = {d: f["rss_capped_over_uncapped"] for d, f in found.items()}
    return {
        "title": "`serve --malloc-arenas`: capped against uncapped",
        "text": [
            f"`labledger serve` with glibc's malloc arenas capped at two (as shipped) and "
            f"uncapped (`--malloc-arenas 0`), {ROUNDS} rounds taking turns, each on a fresh "
            f"database: a saturation level at concurrency {config.saturation_level}, then the "
            "deadline burst. The option stays while the capped server's peak RSS is lower."
        ],
        "goals": [
            {
                "goal": "peak server RSS, arenas capped ÷ uncapped (`serve --malloc-arenas`)",
                "target": "< 1.0",
                "values": ratio,
                "met": {d: r["median"] < 1.0 for d, r in ratio.items()},
                "digits": 2,
            }
        ],
        "tables": [
            {
                "title": "Peak RSS (MB) and p99 (ms)",
                "header": ["database", "arenas", "peak RSS", "p99 at saturation", "p99 burst"],
                "rows": rows,
            }
        ],
        "figures": found,
    }
