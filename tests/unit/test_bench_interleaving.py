"""The bench takes its targets in turn step by step, so that a ratio compares figures measured
seconds apart. The scenarios themselves are replaced by recorders: only the order is tested."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from bench import suite
from bench.config import SMOKE
from bench.databases import Databases
from bench.servers import Server
from bench.targets import Target


def _targets() -> list[Target]:
    databases = Databases(Path("/nonexistent"), None)
    return [
        Target("labledger", Server("labledger", 1, 11), None, databases),
        Target("naive", Server("naive", 2, 12), None, databases),
        Target("db_bound", None, None, databases),
    ]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    made: list[tuple[str, ...]] = []

    def level(target: Target, _c: Any, level: int, _n: str, last: float | None) -> dict[str, Any]:
        made.append(("saturation", str(level), target.name, str(last)))
        return {"deliveries_per_s": 100.0 + level}

    def step(name: str) -> Any:
        return lambda target, config, _nonce: made.append((name, target.name)) or {"ok": 1}

    def rate(target: Target, config: Any, _nonce: str) -> dict[str, Any]:
        made.append(("offered_rate", target.name, str(config.rate)))
        return {"offered_per_s": config.rate}

    monkeypatch.setattr(suite, "saturation_level", level)
    monkeypatch.setattr(suite, "offered_rate", rate)
    for name in ("burst", "duplicate_storm"):
        monkeypatch.setattr(suite, name, step(name))
    monkeypatch.setattr(Target, "peak_rss_mb", lambda self: 1.0)
    return made


def test_every_level_is_taken_by_every_target_before_the_next(
    calls: list[tuple[str, ...]],
) -> None:
    config = replace(SMOKE, levels=(1, 8, 32))
    figures = suite._interleaved(_targets(), config, "n", 0)
    saturation = [c[1:3] for c in calls if c[0] == "saturation"]
    assert saturation == [
        (level, name) for level in ("1", "8", "32") for name in ("labledger", "naive", "db_bound")
    ]
    # each target's pool is sized from its own previous level, not another target's
    assert [c[3] for c in calls if c[0] == "saturation" and c[2] == "naive"] == [
        "None", "101.0", "108.0",
    ]  # fmt: skip
    rest = [c for c in calls if c[0] != "saturation"]
    fixed, half = str(config.rate), str(0.5 * 132.0)  # naive's best level here: 100 + 32
    assert rest == [
        ("offered_rate", "labledger", fixed), ("offered_rate", "naive", fixed),
        ("offered_rate", "labledger", half), ("offered_rate", "naive", half),
        ("burst", "labledger"), ("burst", "naive"),
        ("duplicate_storm", "labledger"), ("duplicate_storm", "naive"),
    ]  # fmt: skip
    assert set(figures["db_bound"]) == {"saturation"}  # no server: no rate, burst or RSS
    assert figures["naive"]["saturation"]["32"] == {"deliveries_per_s": 132.0}
    assert figures["labledger"]["peak_rss_mb"] == 1.0
    assert figures["labledger"]["relaxed_rate"] == {"offered_per_s": 66.0}
    assert "relaxed_rate" not in figures["db_bound"]


@pytest.mark.parametrize(
    ("index", "first"), [(0, "labledger"), (1, "naive"), (2, "db_bound"), (3, "labledger")]
)
def test_the_order_rotates_run_by_run(calls: list[tuple[str, ...]], index: int, first: str) -> None:
    suite._interleaved(_targets(), replace(SMOKE, levels=(4,)), "n", index)
    assert calls[0][2] == first
    assert sorted(c[2] for c in calls if c[0] == "saturation") == [
        "db_bound", "labledger", "naive",
    ]  # fmt: skip
