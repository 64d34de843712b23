"""`labledger reconcile --activity` against the GitHub double, on both databases (issue 24):
pushes past the redelivery window are read back from GitHub's activity API, and the push times
that webhooks claim are confirmed or contradicted there."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from labledger.cli import main
from labledger.config import Settings
from labledger.http.app import create_app
from labledger.storage import migrate
from labledger.storage.engine import make_engine
from labledger.storage.sql_store import SqlStore
from labledger.storage.tables import audit_events
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.github_double import GitHubDouble, broken, rate_limited
from tests.integration.conftest import HOOK
from tests.support import (
    SECRET,
    SIGNER,
    TOKEN,
    body_of,
    commit,
    headers_for,
    push_payload,
    session_spec,
    sha,
)

pytestmark = pytest.mark.slow
REPO = "octo/lab"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def chain(count: int, start: int = 1_763_990_000) -> list[dict[str, Any]]:
    """`count` push payloads to main, each from where the one before ended, a minute apart."""
    payloads, before = [], sha("template")
    for n in range(count):
        work = [commit(), commit()]
        payloads.append(push_payload(work, before=before, pushed_at=start + 60 * n))
        before = work[-1]["id"]
    return payloads


def attempts_of(store: SqlStore) -> list[tuple[Any, ...]]:
    session = store.list_sessions(limit=10)[0]
    return [
        (a.commit.sha, a.commit.tree_sha, a.commit.message, a.branch, a.pushed_at, a.trusted_time)
        for a in store.all_session_attempts(session.id)
    ]


def api(ledger: Ledger, path: str) -> Any:
    settings = Settings.model_validate({"github_webhook_secret": SECRET, "api_tokens": TOKEN})
    with TestClient(create_app(settings, ledger.store, SIGNER)) as client:
        answer = client.get(path, headers=ADMIN)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_pushes_missed_past_the_redelivery_window_are_read_back_from_activity(
    github: GitHubDouble, ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pushes no hook can redeliver any more are recorded from GitHub's activity and compare
    answers with GitHub's times: the same attempts as a run where nothing failed, marked as
    recorded from the API, with no gap, and `verify` re-derives them intact."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    payloads = chain(3)
    for payload in payloads:
        github.pushed(REPO, payload)  # GitHub's own record of the push
        assert github.deliver(HOOK, body_of(payload)).status_code == 0  # labledger was down
    github.hooks[HOOK].clear()  # three days on: GitHub no longer lists the failed deliveries
    assert main(["reconcile"]) == 0
    assert "saw 0 deliveries" in capsys.readouterr().out
    assert ledger.store.push_chain_gaps() == [] and attempts_of(ledger.store) == []

    assert main(["reconcile", "--activity"]) == 0
    assert "saw 3 branch updates, recorded 3 missed pushes (6 attempts)" in capsys.readouterr().out
    assert main(["reconcile", "--activity"]) == 0  # nothing lacking the second time
    assert "recorded 0 missed pushes" in capsys.readouterr().out

    calm = make_engine(f"sqlite:///{tmp_path / 'calm.db'}")
    migrate.upgrade(calm)
    baseline = SqlStore(calm)
    baseline.create_session(session_spec(), "test", datetime.now(UTC))
    for payload in payloads:
        deliver(baseline, payload)
    assert attempts_of(ledger.store) == attempts_of(baseline)
    calm.dispose()
    assert ledger.store.push_chain_gaps() == []

    session_id = ledger.store.list_sessions(limit=1)[0].id
    items = api(ledger, f"/api/v1/sessions/{session_id}/attempts")["items"]
    assert {(a["recorded_from"], a["time_unconfirmed"]) for a in items} == {("github-api", False)}
    delivery = api(ledger, f"/api/v1/deliveries/{items[0]['delivery_id']}")
    assert delivery["push"]["recorded_from"] == "github-api"
    assert delivery["delivery"]["hook_id"] is None
    with ledger.engine.connect() as conn:
        recorded = select(audit_events.c.actor).where(audit_events.c.action == "delivery.recorded")
        assert set(conn.execute(recorded).scalars()) == {"github-api"}
    assert main(["integrate"]) == 0
    assert main(["verify"]) == 0


def test_a_session_created_later_picks_up_pushes_read_from_activity(
    github: GitHubDouble, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A push recorded from the API is a recorded push like any other: a session of another
    lab created afterwards picks up its attempts from the kept API evidence."""
    monkeypatch.delenv("LABLEDGER_GITHUB_HOOKS")  # --activity needs no hook
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    github.pushed(REPO, chain(1)[0])
    assert main(["reconcile", "--activity"]) == 0
    [later] = ledger.store.open_sessions(
        [session_spec(lab_id="lab-2", branch_glob="main")], "test", datetime.now(UTC)
    )
    assert len(later.attempt_ids) == 2
    assert main(["integrate"]) == 0
    assert main(["verify"]) == 0


def test_forged_backdated_push_is_reported_contradicted(
    github: GitHubDouble, ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """A push signed with a leaked secret and back-dated to before the due date is reported
    contradicted by GitHub's activity, as evidence of forgery, on the attempt itself."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    real = datetime.now(UTC) - timedelta(minutes=5)
    payload = push_payload([commit()], before=sha("template"), pushed_at=1_763_990_000)
    github.pushed(REPO, payload, timestamp=real)  # what GitHub itself recorded
    answer = deliver(ledger.store, payload)  # the forger's copy, a week "earlier"

    assert main(["reconcile", "--activity"]) == 0
    out = capsys.readouterr().out
    assert "times 1 contradicted" in out and "CONTRADICTED (evidence of forgery)" in out
    detail = api(ledger, f"/api/v1/attempts/{answer.body['attempt_ids'][0]}")
    assert detail["time_check"]["result"] == "contradicted"
    assert "forgery" in detail["time_check"]["meaning"]
    assert main(["reconcile", "--activity"]) == 0  # checked once, not again
    assert "times" not in capsys.readouterr().out


def test_late_delivery_with_a_true_time_is_confirmed(
    github: GitHubDouble, ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """A delivery that arrived long after a genuine push is time_unconfirmed until the
    activity API shows the same push at the same time: then it is confirmed."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    payload = push_payload([commit()], before=sha("template"), pushed_at=1_763_990_000)
    github.pushed(REPO, payload)
    answer = deliver(ledger.store, payload)
    assert main(["reconcile", "--activity"]) == 0
    assert "times 1 confirmed" in capsys.readouterr().out
    detail = api(ledger, f"/api/v1/attempts/{answer.body['attempt_ids'][0]}")
    assert detail["time_check"]["result"] == "confirmed"
    assert detail["attempt"]["recorded_from"] == "webhook"


def test_push_github_never_saw_is_reported_not_found(
    github: GitHubDouble, ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """A signed push whose branch update GitHub's activity does not list is `not found`."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    github.pushed(REPO, chain(1)[0])
    made = deliver(ledger.store, push_payload([commit()], before=sha("x"), pushed_at=1_763_990_000))
    assert main(["reconcile", "--activity", "--confirm-all"]) == 0
    assert "times 1 not found" in capsys.readouterr().out
    detail = api(ledger, f"/api/v1/attempts/{made.body['attempt_ids'][0]}")
    assert detail["time_check"]["result"] == "not found"


def test_confirm_all_checks_the_attempt_that_counts(
    github: GitHubDouble, ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """A timely push is not checked by default; with --confirm-all the push of the attempt
    that counts is, and a matching time is confirmed."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    pushed_at = 1_763_990_000
    payload = push_payload([commit()], before=sha("template"), pushed_at=pushed_at)
    github.pushed(REPO, payload)
    deliver(ledger.store, payload, received_at=datetime.fromtimestamp(pushed_at + 2, UTC))
    assert main(["reconcile", "--activity"]) == 0
    assert "times" not in capsys.readouterr().out
    assert main(["reconcile", "--activity", "--confirm-all"]) == 0
    assert "times 1 confirmed" in capsys.readouterr().out


def test_activity_backfill_waits_out_a_rate_limit_and_reports_what_is_missing(
    github: GitHubDouble, ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """A secondary rate limit on the activity list is waited out; a compare GitHub refuses
    leaves that push reported missing and the run exits non-zero, and a later run records it."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    first, second = chain(2)
    github.pushed(REPO, first)
    github.pushed(REPO, second)
    github.scripted += [
        (f"/repos/{REPO}/activity", rate_limited(1)),
        (f"/repos/{REPO}/compare/{second['before']}", broken(422)),
    ]
    assert main(["reconcile", "--activity"]) == 1
    captured = capsys.readouterr()
    assert "GitHub asks to wait: retrying in" in captured.err
    assert "recorded 1 missed pushes" in captured.out and "still missing 1" in captured.out
    assert main(["reconcile", "--activity"]) == 0
    assert "recorded 1 missed pushes" in capsys.readouterr().out
    assert ledger.store.push_chain_gaps() == []


def test_webhook_cannot_pass_for_a_push_read_from_the_api(ledger: Ledger) -> None:
    """A signed webhook whose delivery id or body imitates a push read from GitHub's API
    (whose time is never marked unconfirmed) is refused with 400 and writes nothing."""
    payload = push_payload([commit()], pushed_at=1_700_000_000)
    imitation = json.dumps({"labledger_evidence": "github-api", **payload}).encode()
    settings = Settings.model_validate({"github_webhook_secret": SECRET, "api_tokens": TOKEN})
    with TestClient(create_app(settings, ledger.store, SIGNER)) as client:
        by_id = client.post(
            "/webhooks/github",
            content=body_of(payload),
            headers=headers_for(body_of(payload), delivery_id="github-api:1"),
        )
        by_body = client.post("/webhooks/github", content=imitation, headers=headers_for(imitation))
    assert (by_id.status_code, by_body.status_code) == (400, 400)
    assert ledger.store.count_rows()["pushes"] == 0


def test_the_lab_csv_says_where_the_counting_attempt_came_from(
    github: GitHubDouble, ledger: Ledger
) -> None:
    """The lab CSV names how the counting attempt's push was recorded."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    github.pushed(REPO, chain(1)[0])
    assert main(["reconcile", "--activity"]) == 0
    settings = Settings.model_validate({"github_webhook_secret": SECRET, "api_tokens": TOKEN})
    with TestClient(create_app(settings, ledger.store, SIGNER)) as client:
        text = client.get("/api/v1/labs/lab-1/summary?format=csv", headers=ADMIN).text
    header, row = text.splitlines()[:2]
    cells = dict(zip(header.split(","), row.split(","), strict=True))
    assert cells["counting_recorded_from"] == "github-api"
    assert cells["api_recorded_attempts"] == cells["attempts"] != "0"
