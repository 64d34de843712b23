"""Scopes, verification results, extensions, summaries and the change feed over HTTP."""

from __future__ import annotations

import csv
import io
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from labledger.config import Settings
from labledger.http.app import create_app
from labledger.storage.merkle_log import SqlLog
from tests.conftest import Ledger
from tests.contract.helpers import audit_actions
from tests.support import SECRET, SIGNER, TOKEN, body_of, commit, headers_for, push_payload

ADMIN = {"Authorization": f"Bearer {TOKEN}"}
G_TOKEN = "grader-token-0123456789abcdef012345"
R_TOKEN = "reader-token-0123456789abcdef012345"
GRADER = {"Authorization": f"Bearer {G_TOKEN}"}
READER = {"Authorization": f"Bearer {R_TOKEN}"}
SESSION = {
    "lab_id": "lab-7",
    "subject_id": "student-1",
    "repository_id": 186853002,
    "repository_full_name": "octo/lab",
    "opens_at": "2025-01-01T00:00:00Z",
    "due_at": "2025-11-24T16:00:00Z",
}
PUSHED = 1_764_000_000  # 2025-11-24T16:00:00Z: exactly at the due date


@pytest.fixture
def client(ledger: Ledger) -> Iterator[TestClient]:
    settings = Settings.model_validate(
        {
            "github_webhook_secret": SECRET,
            "api_tokens": f"read:{R_TOKEN},grader:{G_TOKEN},{TOKEN}",
        }
    )
    with TestClient(create_app(settings, ledger.store, SIGNER)) as made:
        yield made


def _push(
    client: TestClient,
    commits: list[dict[str, object]] | bytes,
    pushed_at: int = PUSHED,
    **kw: object,
) -> list[int]:
    body = (
        commits
        if isinstance(commits, bytes)
        else body_of(push_payload(commits, pushed_at=pushed_at))
    )
    answer = client.post("/webhooks/github", content=body, headers=headers_for(body, **kw))  # type: ignore[arg-type]
    assert answer.status_code in (200, 202), answer.text
    return list(answer.json()["attempt_ids"])


def _session(client: TestClient, **overrides: object) -> int:
    answer = client.post("/api/v1/sessions", json=dict(SESSION, **overrides), headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def _result(status: str = "passed", run_id: str = "run-1", **extra: object) -> dict[str, object]:
    return {"verifier": "autograder", "run_id": run_id, "status": status, **extra}


def test_scopes_admin_includes_grader_includes_read(client: TestClient) -> None:
    """read may read, grader may also report results, only admin opens sessions and extends."""
    assert client.post("/api/v1/sessions", json=SESSION, headers=READER).status_code == 403
    assert client.post("/api/v1/sessions", json=SESSION, headers=GRADER).status_code == 403
    session_id = _session(client)
    (attempt_id,) = _push(client, [commit()])
    assert client.get(f"/api/v1/attempts/{attempt_id}", headers=READER).status_code == 200
    path = f"/api/v1/attempts/{attempt_id}/verifications"
    refused = client.post(path, json=_result(), headers=READER)
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert client.post(path, json=_result(), headers=GRADER).status_code == 201
    assert client.post(path, json=_result(run_id="r2"), headers=ADMIN).status_code == 201
    change = {"due_at": "2025-11-30T00:00:00Z", "reason": "extension"}
    deadline = f"/api/v1/sessions/{session_id}/deadline-changes"
    assert client.post(deadline, json=change, headers=GRADER).status_code == 403
    assert client.post(deadline, json=change, headers=ADMIN).status_code == 200


def test_verification_results_are_idempotent_and_never_overwritten(client: TestClient) -> None:
    """Same run again: 200 with the first result; other body under the same run: 409."""
    _session(client)
    (attempt_id,) = _push(client, [commit()])
    path = f"/api/v1/attempts/{attempt_id}/verifications"
    body = _result("failed", score="7.5", max_score=10, details={"failed_tests": ["t1"]})
    first = client.post(path, json=body, headers=GRADER)
    assert first.status_code == 201, first.text
    assert first.json()["score"] == "7.5" and first.json()["max_score"] == "10"
    again = client.post(path, json=body, headers=GRADER)
    assert again.status_code == 200 and again.json() == first.json()
    conflict = client.post(path, json=dict(body, status="passed"), headers=GRADER)
    assert conflict.status_code == 409 and conflict.json()["error"] == "conflict"
    rerun = client.post(path, json=_result("passed", run_id="run-2"), headers=GRADER)
    assert rerun.status_code == 201
    detail = client.get(f"/api/v1/attempts/{attempt_id}", headers=READER).json()
    results = detail["verifications"]
    assert results["status"] == "passed"
    assert [r["run_id"] for r in results["current"]] == ["run-2"]
    assert [r["run_id"] for r in results["history"]] == ["run-1", "run-2"]
    unknown = client.post("/api/v1/attempts/999/verifications", json=_result(), headers=GRADER)
    assert unknown.status_code == 404
    floats = client.post(path, json=_result(run_id="f", details={"x": 0.5}), headers=GRADER)
    assert floats.status_code == 422
    huge = client.post(path, json=_result(run_id="h", details={"x": "y" * 20_000}), headers=GRADER)
    assert huge.status_code == 422


def test_an_extension_is_appended_audited_and_changes_late(
    client: TestClient, ledger: Ledger
) -> None:
    """A deadline change keeps the original visible, is audited, and `late` follows it."""
    session_id = _session(client)
    (attempt_id,) = _push(client, [commit()], pushed_at=PUSHED + 600)
    attempts = f"/api/v1/sessions/{session_id}/attempts"
    assert client.get(attempts, headers=READER).json()["items"][0]["late"] is True
    change = {"due_at": "2025-11-25T16:00:00Z", "reason": "medical certificate"}
    changed = client.post(
        f"/api/v1/sessions/{session_id}/deadline-changes", json=change, headers=ADMIN
    )
    assert changed.status_code == 200, changed.text
    shown = client.get(f"/api/v1/sessions/{session_id}", headers=READER).json()
    assert shown["due_at"] == "2025-11-25T16:00:00Z"
    assert shown["original_due_at"] == "2025-11-24T16:00:00Z" and shown["deadline_changes"] == 1
    assert client.get(attempts, headers=READER).json()["items"][0]["late"] is False
    summary = client.get(f"/api/v1/sessions/{session_id}/summary", headers=READER).json()
    assert summary["counting_attempt"]["id"] == attempt_id and summary["late_attempts"] == 0
    assert audit_actions(ledger.store)[-1] == "session.deadline_changed"
    bad = {"due_at": "2024-01-01T00:00:00Z", "reason": "before opens_at"}
    assert (
        client.post(
            f"/api/v1/sessions/{session_id}/deadline-changes", json=bad, headers=ADMIN
        ).status_code
        == 422
    )


def test_session_and_lab_summaries_and_csv(client: TestClient) -> None:
    """The attempt that counts is the newest on time; the lab summary lists every session."""
    first = _session(client, subject_id="alice")
    second = _session(client, subject_id="bob", repository_id=999)
    on_time, _ = _push(client, [commit(), commit()], pushed_at=PUSHED - 60)
    (late,) = _push(client, [commit()], pushed_at=PUSHED + 60)
    client.post(f"/api/v1/attempts/{_}/verifications", json=_result("failed"), headers=GRADER)
    summary = client.get(f"/api/v1/sessions/{first}/summary", headers=READER).json()
    assert summary["attempts"] == 3 and summary["late_attempts"] == 1
    assert summary["counting_attempt"]["id"] == _ and summary["counting_status"] == "failed"
    assert summary["newest_attempt"]["id"] == late and summary["newest_late"] is True
    lab = client.get("/api/v1/labs/lab-7/summary", headers=READER).json()
    assert [s["session_id"] for s in lab["sessions"]] == [first, second]
    assert lab["sessions"][1]["counting_attempt"] is None and lab["sessions"][1]["attempts"] == 0
    for params, headers in (({"format": "csv"}, READER), ({}, dict(READER, Accept="text/csv"))):
        answer = client.get("/api/v1/labs/lab-7/summary", params=params, headers=headers)
        assert answer.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(answer.text)))
        assert [r["subject_id"] for r in rows] == ["alice", "bob"]
        assert rows[0]["counting_attempt_id"] == str(_) and rows[0]["counting_status"] == "failed"
        assert rows[0]["late_attempts"] == "1" and rows[1]["counting_attempt_id"] == ""
    assert on_time < _


def _read_feed(
    client: TestClient, cursor: str, limit: int = 2
) -> tuple[list[tuple[str, int]], str]:
    seen: list[tuple[str, int]] = []
    while True:
        page = client.get(
            "/api/v1/feed", params={"after": cursor, "limit": limit}, headers=READER
        ).json()
        seen.extend((i["type"], i["id"]) for i in page["items"])
        if page["next_cursor"] == cursor:
            return seen, cursor
        cursor = page["next_cursor"]


def test_feed_delivers_each_entry_exactly_once_across_restarts(
    client: TestClient,
    ledger: Ledger,
) -> None:
    """A consumer keeping its cursor sees attempts, pushes and results once each, in log order."""
    log = SqlLog(ledger.engine)
    _session(client)
    first = body_of(push_payload([commit(), commit()], pushed_at=PUSHED))
    ids = _push(client, first, delivery_id="feed-1")
    log.integrate(SIGNER)
    seen, cursor = _read_feed(client, "")
    assert [k for k, _ in seen] == ["push", "attempt", "attempt"]
    # The consumer "restarts" with its stored cursor; meanwhile more entries arrive.
    _push(client, [commit()], delivery_id="feed-2")
    assert _push(client, first, delivery_id="feed-1") == ids  # a redelivery: nothing new
    client.post(f"/api/v1/attempts/{ids[0]}/verifications", json=_result(), headers=GRADER)
    assert _read_feed(client, cursor)[0] == []  # nothing before integration
    log.integrate(SIGNER)
    more, cursor = _read_feed(client, cursor)
    assert [k for k, _ in more] == ["push", "attempt", "verification"]
    everything = seen + more
    assert len(everything) == len(set(everything))
    counts = ledger.store.count_rows()
    assert len(everything) == counts["attempts"] + counts["pushes"] + counts["verification_results"]
    assert _read_feed(client, cursor)[0] == []
    page = client.get("/api/v1/feed", params={"after": "0"}, headers=READER).json()
    assert (
        page["items"][1]["attempt"]["id"] == ids[0]
        and page["items"][0]["push"]["ref"] == "refs/heads/main"
    )


def test_feed_long_polls_until_an_entry_arrives(client: TestClient, ledger: Ledger) -> None:
    """With `wait`, an empty feed answers as soon as a new entry is integrated, not before."""
    _session(client)
    SqlLog(ledger.engine).integrate(SIGNER)
    cursor = client.get("/api/v1/feed", headers=READER).json()["next_cursor"]

    def push_later() -> None:
        time.sleep(0.6)
        _push(client, [commit()])
        SqlLog(ledger.engine).integrate(SIGNER)

    started = time.monotonic()
    pusher = threading.Thread(target=push_later)
    pusher.start()
    page = client.get("/api/v1/feed", params={"after": cursor, "wait": 10}, headers=READER).json()
    waited = time.monotonic() - started
    pusher.join()
    assert [i["type"] for i in page["items"]] == ["push", "attempt"]
    assert 0.5 < waited < 5, waited
    started = time.monotonic()
    empty = client.get(
        "/api/v1/feed", params={"after": page["next_cursor"], "wait": 0.5}, headers=READER
    )
    assert empty.json()["items"] == [] and 0.4 < time.monotonic() - started < 3
    assert client.get("/api/v1/feed", params={"after": "x"}, headers=READER).status_code == 400
