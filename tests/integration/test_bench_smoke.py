"""The benchmark suite still runs end to end. Timings are never asserted: only that it works."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from bench import tables
from bench.config import SMOKE
from bench.results import validate
from bench.suite import measure_only

from tests.unit.test_bench_goals import ISSUE_23_TARGETS

ROOT = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT_S = 600
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
@pytest.mark.bench
def test_bench_smoke_writes_a_well_formed_result_file(tmp_path: Path) -> None:
    """`python -m bench smoke` runs every scenario and leaves well-formed results, plot, report."""
    out = tmp_path / "results"
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "smoke", "--out", str(out)],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    results = json.loads((out / "latest.json").read_text())
    validate(results)
    assert results["schema"] == "labledger-bench/1"
    assert results["mode"] == "smoke"
    assert "sqlite" in results["dialects"]
    if os.environ.get("LABLEDGER_TEST_PG_URL") and os.environ.get("CI") == "true":
        assert "postgresql" in results["dialects"]
    if importlib.util.find_spec("matplotlib") is not None:  # the `bench` dependency group
        assert (out / "throughput.png").read_bytes().startswith(PNG_MAGIC)
    report = (out / "BENCHMARKS.md").read_text()
    assert report.startswith("# labledger benchmarks")
    _assert_tamper_shape(results, report)
    _assert_targets_and_profile(results, report)


def _assert_targets_and_profile(results: dict[str, object], report: str) -> None:
    """Every issue-23 target has its row, the registered scenarios theirs, and the server was
    profiled on every database."""
    targets = report[report.index("## Against the targets") :].split("\n## ")[0]
    for name in ISSUE_23_TARGETS:
        assert name in targets, name
    profiled = results["scenarios"]["where_time_goes"]["profiles"]  # type: ignore[index]
    for dialect in results["dialects"]:  # type: ignore[attr-defined]
        assert profiled[dialect]["samples"] > 0
        assert any("labledger/" in f["function"] for f in profiled[dialect]["cumulative"])
    assert "## Where the time goes" in report
    assert "arenas capped ÷ uncapped" in targets  # bench/arenas.py, a registered scenario


def _assert_tamper_shape(results: dict[str, object], report: str) -> None:
    """Tamper evidence on vs off, verify, receipts and coverage ran on every database."""
    tamper = results["tamper"]
    assert isinstance(tamper, dict)
    for dialect in results["dialects"]:  # type: ignore[attr-defined]
        on_off = tamper["on_off"][dialect]
        for mode in ("on", "off"):
            assert on_off[mode]["deliveries_per_s"]["median"] > 0
            assert on_off[mode]["status_5xx"]["median"] == 0
        assert on_off["on_over_off"]["median"] > 0
        coverage = tamper["coverage"][dialect]
        assert coverage["covered"] == coverage["samples"] > 0
        assert coverage["first_after_start_ms"] > 0  # covered before the measured ones
        verify = tamper["verify"][dialect]
        assert verify["entries"] > verify["attempts"]  # sessions, deliveries, pushes, audit too
        for key in ("verify", "verify_with_bodies"):
            assert verify[key]["intact"] is True
            assert verify[key]["entries"]["median"] == verify["entries"]
        assert verify["receipts"]["count"] > 0
    assert "## Tamper evidence (issue 3)" in report
    assert "pending tamper-evidence issue" not in report
    assert "Hand-written" not in report  # generated text only


@pytest.mark.parametrize("part", ["verify", "reads"])
def test_only_one_part_is_measured_and_merged_into_earlier_results(part: str) -> None:
    """`--only verify` and `--only reads` replace just their figures, for the databases
    measured, and say when and where they ran; everything else stays as it was."""
    config = replace(SMOKE, verify_attempts=300, read_attempts=300, receipts=3)
    kept = {"figures": "of another database"}
    previous = {
        "config": {"runs": 3, "verify_attempts": 1, "read_attempts": 1},
        "tamper": {"on_off": kept, "verify": {"postgresql": kept}},
        "reads": {"postgresql": kept},
        "writes": kept,
    }
    merged = measure_only(part, config, ["sqlite"], None, previous)
    assert merged["writes"] == kept and merged["config"]["runs"] == 3
    assert merged["tamper"]["on_off"] == kept
    if part == "verify":
        assert merged["tamper"]["verify"]["postgresql"] == kept
        found = merged["tamper"]["verify"]["sqlite"]
        assert found["verify"]["intact"] and found["verify_one_process"]["intact"]
        assert merged["config"]["verify_attempts"] == 300
        assert merged["reads"] == previous["reads"]
    else:
        assert merged["reads"]["postgresql"] == kept
        found = merged["reads"]["sqlite"]
        assert found["verified"] and merged["config"]["read_attempts"] == 300
        assert merged["tamper"] == previous["tamper"]
    assert found["measured"]["machine"] and found["measured"]["started_at"]
    said = "\n".join(tables.measured_apart({"sqlite": found, "postgresql": kept}, part))
    assert f"--only {part}`): SQLite on {found['measured']['started_at']}" in said
    assert "PostgreSQL" not in said  # measured with the rest of the report
