"""Reads whose cost an API client chooses: session summaries and feed long-polls (issue 22)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from labledger.config import Settings
from labledger.http.app import create_app
from labledger.http.grading_routes import POLL_SECONDS
from tests.conftest import Ledger
from tests.support import SECRET, SIGNER, TOKEN, body_of, commit, headers_for, push_payload

ADMIN = {"Authorization": f"Bearer {TOKEN}"}
DUE = 1_764_000_000  # 2025-11-24T16:00:00Z


@pytest.fixture
def client(ledger: Ledger) -> Iterator[TestClient]:
    settings = Settings.model_validate({"github_webhook_secret": SECRET, "api_tokens": TOKEN})
    with TestClient(create_app(settings, ledger.store, SIGNER)) as made:
        yield made


def _session(client: TestClient, repository_id: int) -> int:
    spec = {
        "lab_id": "lab-9",
        "subject_id": f"student-{repository_id}",
        "repository_id": repository_id,
        "opens_at": "2025-01-01T00:00:00Z",
        "due_at": "2025-11-24T16:00:00Z",
    }
    answer = client.post("/api/v1/sessions", json=spec, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def _push(client: TestClient, repository_id: int, count: int, pushed_at: int) -> list[int]:
    commits = [commit((repository_id, pushed_at, i)) for i in range(count)]
    body = body_of(push_payload(commits, repository_id=repository_id, pushed_at=pushed_at))
    answer = client.post("/webhooks/github", content=body, headers=headers_for(body))
    assert answer.status_code == 202, answer.text
    return list(answer.json()["attempt_ids"])


def _statements(ledger: Ledger, client: TestClient, path: str) -> tuple[int, dict[str, Any]]:
    """The statements one GET runs on the database, and its answer."""
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(ledger.engine, "before_cursor_execute", count)
    try:
        answer = client.get(path, headers=ADMIN)
    finally:
        event.remove(ledger.engine, "before_cursor_execute", count)
    assert answer.status_code == 200, answer.text
    return len(seen), answer.json()


def test_session_summary_cost_does_not_grow_with_attempts(
    ledger: Ledger, client: TestClient
) -> None:
    """A summary of 1,105 attempts runs as many statements as one of two, and is exact."""
    small, big = _session(client, 501), _session(client, 502)
    _push(client, 501, 1, DUE - 60)
    _push(client, 501, 1, DUE + 60)
    on_time = _push(client, 502, 1100, DUE - 3600)
    late = _push(client, 502, 5, DUE + 3600)
    report = {"verifier": "ci", "run_id": "r1", "status": "passed"}
    path = f"/api/v1/attempts/{on_time[-1]}/verifications"
    assert client.post(path, json=report, headers=ADMIN).status_code == 201
    few, _ = _statements(ledger, client, f"/api/v1/sessions/{small}/summary")
    many, summary = _statements(ledger, client, f"/api/v1/sessions/{big}/summary")
    assert many == few
    assert (summary["attempts"], summary["late_attempts"]) == (1105, 5)
    assert summary["counting_attempt"]["id"] == on_time[-1]
    assert summary["newest_attempt"]["id"] == late[-1] and summary["newest_late"]
    assert summary["counting_status"] == "passed"


def _long_polls(client: TestClient, count: int, wait: float) -> list[int]:
    """`count` concurrent long-polls on an empty feed; their statuses."""
    statuses: list[int] = []

    def poll() -> None:
        answer = client.get("/api/v1/feed", params={"wait": wait}, headers=ADMIN)
        statuses.append(answer.status_code)
        if answer.status_code == 503:
            assert answer.headers["retry-after"].isdigit()

    polls = [threading.Thread(target=poll) for _ in range(count)]
    for p in polls:
        p.start()
    for p in polls:
        p.join(30)
    return statuses


def test_many_long_polls_share_one_database_check(ledger: Ledger, client: TestClient) -> None:
    """Thirty clients waiting 2 s cost one read each plus one shared check per interval."""
    seen: list[str] = []

    def count(*args: Any) -> None:
        if "log_entries" in args[2]:
            seen.append(args[2])

    event.listen(ledger.engine, "before_cursor_execute", count)
    try:
        statuses = _long_polls(client, 30, 2.0)
    finally:
        event.remove(ledger.engine, "before_cursor_execute", count)
    assert statuses == [200] * 30
    checks_per_wait = 2.0 / POLL_SECONDS
    assert len(seen) <= 30 + 2 * checks_per_wait + 2, len(seen)


def test_long_polls_past_the_cap_are_refused(ledger: Ledger) -> None:
    """Past LABLEDGER_FEED_MAX_WAITERS, a long-poll is answered 503 + Retry-After at once."""
    settings = Settings.model_validate(
        {"github_webhook_secret": SECRET, "api_tokens": TOKEN, "feed_max_waiters": 4}
    )
    with TestClient(create_app(settings, ledger.store, SIGNER)) as capped:
        statuses = _long_polls(capped, 10, 3.0)
        assert capped.get("/api/v1/feed", params={"wait": 0.3}, headers=ADMIN).status_code == 200
    assert sorted(statuses) == [200] * 4 + [503] * 6
