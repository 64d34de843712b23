"""Forge time claims: a pushed_at far older than its arrival is kept but marked (invariant 9)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from labledger.config import Settings
from labledger.http.app import create_app
from tests.conftest import Ledger
from tests.support import SECRET, SIGNER, TOKEN, body_of, commit, headers_for, push_payload

ADMIN = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(ledger: Ledger) -> Iterator[TestClient]:
    settings = Settings.model_validate(
        {"github_webhook_secret": SECRET, "api_tokens": TOKEN}  # the default skew, 900 s
    )
    with TestClient(create_app(settings, ledger.store, SIGNER)) as made:
        yield made


def _session(client: TestClient, due_at: datetime, subject: str) -> int:
    spec = {
        "lab_id": "lab-t",
        "subject_id": subject,
        "repository_id": 186853002,
        "repository_full_name": "octo/lab",
        "opens_at": "2025-01-01T00:00:00Z",
        "due_at": due_at.isoformat(),
    }
    created = client.post("/api/v1/sessions", json=spec, headers=ADMIN)
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def _push(client: TestClient, pushed_at: datetime) -> dict[str, Any]:
    body = body_of(push_payload([commit()], pushed_at=int(pushed_at.timestamp())))
    answer = client.post("/webhooks/github", content=body, headers=headers_for(body))
    assert answer.status_code == 202, answer.text
    attempt_id = answer.json()["attempt_ids"][0]
    detail = client.get(f"/api/v1/attempts/{attempt_id}", headers=ADMIN)
    return dict(detail.json())


def test_backdated_pushed_at_is_marked_time_unconfirmed(client: TestClient) -> None:
    """A push signed as made a minute before the deadline but sent an hour late is kept, marked
    time_unconfirmed, and the summary says it counts only by that unconfirmed time."""
    due = datetime.now(UTC) - timedelta(hours=1)
    session_id = _session(client, due, "student-1")
    detail = _push(client, due - timedelta(minutes=1))
    assert (detail["attempt"]["late"], detail["attempt"]["time_unconfirmed"]) == (False, True)
    assert detail["push"]["time_unconfirmed"] is True
    listed = client.get(f"/api/v1/sessions/{session_id}/attempts", headers=ADMIN).json()
    assert [a["time_unconfirmed"] for a in listed["items"]] == [True]
    summary = client.get(f"/api/v1/sessions/{session_id}/summary", headers=ADMIN).json()
    assert summary["counting_attempt"]["time_unconfirmed"] is True
    assert summary["counts_by_unconfirmed_time"] is True
    sheet = client.get("/api/v1/labs/lab-t/summary?format=csv", headers=ADMIN).text
    row = next(csv.DictReader(io.StringIO(sheet)))
    assert (row["counting_time_unconfirmed"], row["counts_by_unconfirmed_time"]) == (
        "true",
        "true",
    )


def test_push_time_within_the_skew_is_confirmed_by_arrival(client: TestClient) -> None:
    """A push that arrives within the skew of its pushed_at is not marked."""
    session_id = _session(client, datetime.now(UTC) + timedelta(days=1), "student-2")
    detail = _push(client, datetime.now(UTC) - timedelta(seconds=30))
    assert (detail["attempt"]["time_unconfirmed"], detail["push"]["time_unconfirmed"]) == (
        False,
        False,
    )
    summary = client.get(f"/api/v1/sessions/{session_id}/summary", headers=ADMIN).json()
    assert summary["counts_by_unconfirmed_time"] is False


def test_clock_skew_setting_decides_the_mark(ledger: Ledger) -> None:
    """LABLEDGER_CLOCK_SKEW_SECONDS sets how old a push time may be before it is marked."""
    settings = Settings.from_env(
        {
            "LABLEDGER_GITHUB_WEBHOOK_SECRET": SECRET,
            "LABLEDGER_API_TOKENS": TOKEN,
            "LABLEDGER_CLOCK_SKEW_SECONDS": "10",
        }
    )
    with TestClient(create_app(settings, ledger.store, SIGNER)) as strict:
        _session(strict, datetime.now(UTC) + timedelta(days=1), "student-3")
        detail = _push(strict, datetime.now(UTC) - timedelta(seconds=60))
    assert (detail["attempt"]["time_unconfirmed"], detail["push"]["time_unconfirmed"]) == (
        True,
        True,
    )
