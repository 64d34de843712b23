"""`labledger sessions extend`, `verifications add`, `attempts show` and `report`."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest

from labledger.cli import main
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.support import commit, push_payload, session_spec

NOW = datetime(2026, 11, 25, tzinfo=UTC)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, ledger: Ledger) -> Ledger:
    for name in ("LABLEDGER_CONFIG", "LABLEDGER_API_TOKENS", "LABLEDGER_SUBSCRIBERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", ledger.url)
    return ledger


def _out(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_grading_from_the_command_line(env: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    """A late attempt counts after an extension; its result shows in `attempts show` and
    in the lab report, as text, JSON and CSV."""
    session = env.store.create_session(session_spec(subject_id="alice"), "test", NOW)
    (attempt_id,) = deliver(env.store, push_payload([commit()], pushed_at=1_764_000_600)).body[
        "attempt_ids"
    ]  # type: ignore[misc]
    before = json.loads(_out(capsys, "report", "lab-1", "--json"))
    assert before["sessions"][0]["counting_attempt"] is None
    _out(
        capsys,
        "sessions", "extend", str(session.id),
        "--due-at", "2025-11-25T16:00:00+00:00", "--reason", "extension granted",
    )  # fmt: skip
    added = _out(
        capsys,
        "verifications", "add", str(attempt_id),
        "--verifier", "ci", "--run-id", "42", "--status", "passed", "--score", "9.5",
        "--max-score", "10", "--details", '{"tests": 20}',
    )  # fmt: skip
    assert "recorded" in added
    again = _out(
        capsys,
        "verifications", "add", str(attempt_id),
        "--verifier", "ci", "--run-id", "42", "--status", "passed", "--score", "9.5",
        "--max-score", "10", "--details", '{"tests": 20}',
    )  # fmt: skip
    assert "already recorded" in again
    assert main(
        ["verifications", "add", str(attempt_id), "--verifier", "ci", "--run-id", "42",
         "--status", "failed"]
    ) == 1  # fmt: skip
    shown = _out(capsys, "attempts", "show", str(attempt_id))
    assert "on time" in shown and "status      passed" in shown and "9.5/10" in shown
    rows = list(csv.DictReader(io.StringIO(_out(capsys, "report", "lab-1", "--csv"))))
    assert rows[0]["subject_id"] == "alice" and rows[0]["counting_attempt_id"] == str(attempt_id)
    assert rows[0]["counting_status"] == "passed" and rows[0]["late_attempts"] == "0"
    assert "counts=" in _out(capsys, "report", "lab-1")


def test_report_csv_cells_cannot_become_formulas(
    env: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """An opaque subject id that looks like a spreadsheet formula is exported as text."""
    env.store.create_session(session_spec(subject_id="=HYPERLINK(1)"), "test", NOW)
    rows = list(csv.DictReader(io.StringIO(_out(capsys, "report", "lab-1", "--csv"))))
    assert rows[0]["subject_id"] == "'=HYPERLINK(1)"
