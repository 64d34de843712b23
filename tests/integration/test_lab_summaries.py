"""Lab summaries at course scale: a fixed number of statements per page of sessions, and the
same answer as summarising each session from all of its attempts (both databases)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, update

from labledger.config import Settings
from labledger.core.grading import summarize, tally
from labledger.core.model import API_DELIVERY_PREFIX, is_time_unconfirmed, recorded_from
from labledger.core.service import check_session_spec
from labledger.http import grading_schemas as gs
from labledger.http.app import create_app
from labledger.http.ui.access import SESSION_COOKIE, UiKeys
from labledger.services import grading
from labledger.storage.maintenance import maintenance
from labledger.storage.tables import deliveries
from tests.conftest import Ledger
from tests.support import SECRET, SIGNER, TOKEN, body_of, commit, headers_for, push_payload, sha
from tests.support import session_spec as spec_of

ADMIN = {"Authorization": f"Bearer {TOKEN}"}
DUE = 1_764_000_000  # 2025-11-24T16:00:00Z
READ = "read-token-for-the-lab-summary-tests-01"


@pytest.fixture
def client(ledger: Ledger) -> Iterator[TestClient]:
    settings = Settings.model_validate({"github_webhook_secret": SECRET, "api_tokens": TOKEN})
    with TestClient(create_app(settings, ledger.store, SIGNER)) as made:
        yield made


def _deliver(client: TestClient, payload: dict[str, Any]) -> list[int]:
    body = body_of(payload)
    answer = client.post("/webhooks/github", content=body, headers=headers_for(body))
    assert answer.status_code == 202, answer.text
    return list(answer.json()["attempt_ids"])


def _student(
    client: TestClient, ledger: Ledger, lab: str, repository_id: int, pushes_made: int
) -> int:
    """A session with `pushes_made` chained pushes of two commits, half before the due date."""
    session = ledger.store.create_session(
        spec_of(lab_id=lab, subject_id=f"s{repository_id}", repository_id=repository_id),
        "test",
        datetime.now(UTC),
    )
    before = None
    for n in range(pushes_made):
        commits = [commit((repository_id, n, k)) for k in range(2)]
        at = DUE - 3600 + n * 7200 // max(1, pushes_made - 1)
        _deliver(
            client, push_payload(commits, repository_id=repository_id, pushed_at=at, before=before)
        )
        before = commits[-1]["id"]
    return session.id


def _course(client: TestClient, ledger: Ledger, lab: str, students: int, pushes_made: int) -> None:
    """Sessions with lateness, an extension, results, a force-push, a gap, a confirmed time,
    a session without attempts and one of another lab on the same repository."""
    ids = [_student(client, ledger, lab, 9000 + i, pushes_made) for i in range(students)]
    first, second = 9000, 9001
    # A force-push that rewrote history, and a push whose predecessor was never delivered.
    rewound = commit((first, 0, 1))["id"]
    forced = [commit(("forced", first))]
    _deliver(client, push_payload(forced, repository_id=first, pushed_at=DUE + 50,
                                  forced=True, before=rewound))  # fmt: skip
    gap = [commit(("gap", second))]
    _deliver(client, push_payload(gap, repository_id=second, pushed_at=DUE + 60,
                                  before=sha("never delivered")))  # fmt: skip
    # A push whose time the forge's clock and the arrival agree on: confirmed, and late.
    _deliver(client, push_payload([commit(("now", second))], repository_id=second,
                                  pushed_at=int(time.time()), before=gap[0]["id"]))  # fmt: skip
    ledger.store.apply_deadline_change(
        ids[1], {"due_at": datetime.fromtimestamp(DUE + 3600, UTC)}, "illness", "test",
        datetime.now(UTC), check_session_spec,
    )  # fmt: skip
    for session_id, status in zip(ids, ("passed", "failed", "error"), strict=False):
        counting = grading.session_summary(ledger.store, session_id).counting_attempt
        assert counting is not None
        for run, verdict in enumerate(("error", status)):
            report = gs.VerificationIn(verifier="ci", run_id=f"r{run}", status=verdict)
            ledger.store.record_verification(report.to_report(counting.id, "t", datetime.now(UTC)))
    ledger.store.create_session(
        spec_of(lab_id=lab, subject_id="empty", repository_id=9999), "test", datetime.now(UTC)
    )


def _per_session(ledger: Ledger, session_id: int) -> gs.SessionSummaryOut:
    """The summary as computed before lab summaries: every attempt of the session read."""
    store = ledger.store
    session = store.get_session(session_id)
    every = store.all_session_attempts(session_id)
    counted = tally(session, every)
    results = store.verifications([counted.counting.id]) if counted.counting else []
    rewrote = {
        a.push_id
        for a in every
        if (p := store.push_record(a.push_id)).forced and not p.created and not p.deleted
    }
    return gs.SessionSummaryOut.of(
        summarize(session, counted, results),
        gaps=store.session_gaps(session),
        force_pushes=len(rewrote),
        unconfirmed_times=sum(
            is_time_unconfirmed(
                a.pushed_at, a.received_at, source=recorded_from("github", a.delivery_id)
            )
            for a in every
        ),
    )


def _statements(ledger: Ledger, lab: str) -> tuple[int, gs.LabSummaryOut]:
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(ledger.engine, "before_cursor_execute", count)
    try:
        summary = grading.lab_page(ledger.store, lab)
    finally:
        event.remove(ledger.engine, "before_cursor_execute", count)
    return len(seen), summary


def test_lab_summary_statements_do_not_grow_with_sessions_or_attempts(
    ledger: Ledger, client: TestClient
) -> None:
    """A lab of 6 sessions and 3 times the pushes is summarised in as many statements as one
    of 3 sessions."""
    _course(client, ledger, "small", 3, 2)
    few, small = _statements(ledger, "small")
    _course_on(client, ledger, "big", 9100, 6, 6)
    many, big = _statements(ledger, "big")
    assert (len(small.sessions), len(big.sessions)) == (4, 6)
    assert sum(s.attempts for s in big.sessions) > 3 * sum(s.attempts for s in small.sessions)
    assert many == few


def _course_on(
    client: TestClient, ledger: Ledger, lab: str, base: int, students: int, pushes_made: int
) -> None:
    for i in range(students):
        _student(client, ledger, lab, base + i, pushes_made)


def test_lab_summary_equals_the_per_session_computation(ledger: Ledger, client: TestClient) -> None:
    """Lateness, an extension, results, a force-push, a gap and unconfirmed times come out as
    summarising each session from all of its attempts does."""
    _course(client, ledger, "lab-7", 4, 3)
    other_lab = spec_of(lab_id="lab-8", subject_id="other", repository_id=9000)
    ledger.store.create_session(other_lab, "test", datetime.now(UTC))
    summary = grading.lab_summary(ledger.store, "lab-7")
    assert [s.subject_id for s in summary.sessions] == ["s9000", "s9001", "s9002", "s9003", "empty"]
    for s in summary.sessions:
        assert s == _per_session(ledger, s.session_id), s.subject_id
    by_subject = {s.subject_id: s for s in summary.sessions}
    assert by_subject["s9000"].force_pushes == 1 and by_subject["s9001"].gaps == 1
    assert by_subject["s9001"].due_at != by_subject["s9001"].original_due_at
    assert by_subject["s9001"].unconfirmed_times == by_subject["s9001"].attempts - 1
    assert [by_subject[f"s900{i}"].counting_status for i in range(3)] == [
        "passed", "failed", "error",
    ]  # fmt: skip
    assert by_subject["empty"].attempts == 0 and by_subject["empty"].counting_attempt is None
    assert (
        grading.session_summary(ledger.store, by_subject["s9000"].session_id)
        == (by_subject["s9000"])
    )


def test_lab_summary_pages_read_on_to_the_whole_lab(ledger: Ledger, client: TestClient) -> None:
    """Pages of two sessions, read on by `next_after`, add up to the whole lab, over the API
    and in its CSV."""
    _course_on(client, ledger, "lab-5", 9200, 5, 1)
    whole = client.get("/api/v1/labs/lab-5/summary", headers=ADMIN).json()
    seen, after = [], 0
    while after is not None:
        page = client.get(
            "/api/v1/labs/lab-5/summary", params={"after": after, "limit": 2}, headers=ADMIN
        ).json()
        assert len(page["sessions"]) <= 2
        seen.extend(page["sessions"])
        after = page["next_after"]
    assert seen == whole["sessions"] and whole["next_after"] is None and len(seen) == 5
    sheet = client.get("/api/v1/labs/lab-5/summary?format=csv", headers=ADMIN).text.splitlines()
    assert sheet[0].endswith(",forge,counting_recorded_from,force_pushes,unconfirmed_times,"
                             "api_recorded_attempts")  # fmt: skip
    assert len(sheet) == 6


def test_api_recorded_attempts_are_marked_not_unconfirmed(
    ledger: Ledger, client: TestClient
) -> None:
    """Attempts of a push read from GitHub's API (its delivery id `github-api:...`) are counted
    as API-recorded, and not as unconfirmed times: their time is the API's own."""
    session_id = _student(client, ledger, "lab-6", 9300, 2)
    before = grading.session_summary(ledger.store, session_id)
    assert (before.api_recorded_attempts, before.unconfirmed_times) == (0, 4)
    newest = before.newest_attempt
    assert newest is not None
    with maintenance(ledger.engine, ("deliveries",)) as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.delivery_id == newest.delivery_id)
            .values(delivery_id=f"{API_DELIVERY_PREFIX}{newest.delivery_id}")
        )
    after = grading.session_summary(ledger.store, session_id)
    assert (after.api_recorded_attempts, after.unconfirmed_times) == (2, 2)


def test_web_view_marks_api_recorded_attempts(ledger: Ledger) -> None:
    """The overview and the attempt page say when an attempt was read from GitHub's API, and
    say so for no other."""
    settings = Settings.model_validate(
        {"github_webhook_secret": SECRET, "api_tokens": f"read:{READ}", "ui_secret_key": "u" * 40}
    )
    with TestClient(create_app(settings, ledger.store, SIGNER)) as web:
        session_id = _student(web, ledger, "lab-4", 9400, 1)
        cookie = UiKeys(settings).open_session(READ)
        assert cookie is not None
        web.cookies.set(SESSION_COOKIE, cookie, path="/ui")
        newest = grading.session_summary(ledger.store, session_id).newest_attempt
        assert newest is not None
        page = web.get(f"/ui/attempts/{newest.id}").text
        assert "a webhook delivery" in page and "not checked" in page
        assert "recorded from the API" not in web.get("/ui/labs/lab-4").text
        with maintenance(ledger.engine, ("deliveries",)) as conn:
            conn.execute(
                update(deliveries)
                .where(deliveries.c.delivery_id == newest.delivery_id)
                .values(delivery_id=f"{API_DELIVERY_PREFIX}{newest.delivery_id}")
            )
        assert "GitHub's API</span>" in web.get(f"/ui/attempts/{newest.id}").text
        overview = web.get("/ui/labs/lab-4").text
        assert "2 recorded from the API" in overview and 'data-marks="api' in overview
