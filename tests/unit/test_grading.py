"""Which attempt counts, current verification status, scopes and subscriber settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from labledger.config import Settings
from labledger.core.errors import ConfigError, InvalidRequest
from labledger.core.grading import SessionSummary, current_results, overall_status, summarize, tally
from labledger.core.model import (
    Account,
    Commit,
    Identity,
    LabAttempt,
    LabSession,
    NewVerification,
    VerificationResult,
)
from labledger.core.service import check_verification
from tests.support import session_spec

DUE = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _session(due: datetime | None = DUE) -> LabSession:
    return LabSession(1, session_spec(due_at=due), DUE)


def _attempt(attempt_id: int, pushed: datetime | None, received: datetime = DUE) -> LabAttempt:
    who = Identity("a", "a@x")
    commit = Commit(f"{attempt_id:040x}", None, "m", who, who, None, True)
    return LabAttempt(attempt_id, 1, commit, "main", Account("a", 1), who, pushed, received, 1, "d")


def _result(result_id: int, attempt_id: int, verifier: str, status: str) -> VerificationResult:
    report = NewVerification(
        attempt_id, verifier, f"r{result_id}", status, None, None, {}, DUE, "t"
    )
    return VerificationResult(result_id, report)


def _summary(
    session: LabSession, attempts: list[LabAttempt], results: list[VerificationResult]
) -> SessionSummary:
    return summarize(session, tally(session, attempts), results)


def test_the_newest_attempt_at_or_before_due_counts() -> None:
    """The newest attempt by trusted time at or before due_at counts; later ones are late."""
    on_time = _attempt(1, DUE - timedelta(hours=1))
    exactly = _attempt(2, DUE)
    late = _attempt(3, DUE + timedelta(seconds=1))
    summary = _summary(_session(), [on_time, exactly, late], [])
    assert summary.counting == exactly and summary.newest == late
    assert summary.newest_late and summary.late_attempts == 1 and summary.attempts == 3


def test_ties_in_trusted_time_go_to_ledger_order() -> None:
    """Two attempts of one push share pushed_at: the later ledger entry counts."""
    first, second = _attempt(5, DUE), _attempt(6, DUE)
    assert _summary(_session(), [second, first], []).counting == second


def test_trusted_time_falls_back_to_received_at_and_commit_dates_never_count() -> None:
    """Without pushed_at, received_at decides; with nothing on time, no attempt counts."""
    summary = _summary(_session(), [_attempt(1, None, DUE + timedelta(minutes=1))], [])
    assert summary.counting is None and summary.newest_late


def test_without_due_date_the_newest_counts_and_nothing_is_late() -> None:
    """A session without due_at: the newest attempt counts and none is late."""
    summary = _summary(_session(None), [_attempt(1, DUE), _attempt(2, DUE + timedelta(days=9))], [])
    assert summary.counting is not None and summary.counting.id == 2
    assert summary.late_attempts == 0 and not summary.newest_late


def test_the_newest_result_per_verifier_is_current() -> None:
    """A re-run replaces nothing but becomes current; the overall status is the worst current."""
    results = [
        _result(1, 7, "ci", "failed"),
        _result(2, 7, "lint", "passed"),
        _result(3, 7, "ci", "passed"),
    ]
    current = current_results(results)[7]
    assert [r.id for r in current] == [3, 2]
    assert overall_status(current) == "passed"
    assert overall_status([*current, _result(4, 7, "x", "error")]) == "error"
    assert overall_status([]) is None
    summary = _summary(_session(), [_attempt(7, DUE)], results)
    assert summary.counting_status == "passed"


@pytest.mark.parametrize(
    ("details", "problem"),
    [
        ({"ratio": 0.5}, "fractional"),
        ({"log": "x" * 17_000}, "limit"),
    ],
)
def test_results_that_cannot_be_leaves_are_refused(
    details: dict[str, object], problem: str
) -> None:
    """Floats have no canonical leaf form and details are capped at 16 KiB."""
    report = NewVerification(1, "ci", "r", "passed", None, None, details, DUE, "t")
    with pytest.raises(InvalidRequest, match=problem):
        check_verification(report)


def test_subscribers_are_parsed_and_secrets_checked() -> None:
    """Subscribers come as `name=url|whsec_…` entries or JSON; a secret must be whsec_ base64."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    settings = Settings.from_env(
        {
            "LABLEDGER_SUBSCRIBERS": f"grader=http://127.0.0.1:9/h|{secret},http://h.example/x|{secret}"
        }
    )
    assert settings.subscriber_names() == ("grader", "http://h.example/x")
    as_json = f'[{{"name": "p", "url": "https://p.example/hook", "secret": "{secret}"}}]'
    assert Settings.from_env({"LABLEDGER_SUBSCRIBERS": as_json}).subscriber_names() == ("p",)
    with pytest.raises(ConfigError, match="LABLEDGER_SUBSCRIBERS"):
        Settings.from_env({"LABLEDGER_SUBSCRIBERS": "p=http://x/h|not-a-secret"})
