"""The /api/v1 edge under hostile input: tokens, control characters, odd digits, CSV cells."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from labledger.config import Settings
from labledger.http.app import create_app
from tests.conftest import Ledger
from tests.integration.servers import running_servers
from tests.support import SECRET, SIGNER, TOKEN

ALICE = "alice-admin-token-0123456789abcdef0123"
READER = "reader-token-0123456789abcdef01234567"
AUTH = {"Authorization": f"Bearer {ALICE}"}
SESSION = {
    "lab_id": "lab-1",
    "subject_id": "student-1",
    "repository_id": 186853002,
    "repository_full_name": "octo/lab",
    "opens_at": "2025-01-01T00:00:00Z",
    "due_at": "2025-11-24T15:00:00Z",
}


@pytest.fixture
def client(ledger: Ledger) -> Iterator[TestClient]:
    tokens = f"alice:admin:{ALICE},read:{READER},{TOKEN}"
    settings = Settings.model_validate({"github_webhook_secret": SECRET, "api_tokens": tokens})
    with TestClient(create_app(settings, ledger.store, SIGNER)) as made:
        yield made


def _actors(ledger: Ledger) -> list[str]:
    with ledger.engine.connect() as conn:
        return list(conn.execute(text("SELECT actor FROM audit_events ORDER BY id")).scalars())


def test_audit_actor_is_token_name_not_hash(client: TestClient, ledger: Ledger) -> None:
    """A session created with a named token is audited under that name, with no token hash."""
    answer = client.post("/api/v1/sessions", json=SESSION, headers=AUTH)
    assert answer.status_code == 201, answer.text
    actors = _actors(ledger)
    assert actors == ["api-token:alice"]
    digest = hashlib.sha256(ALICE.encode()).hexdigest()
    assert not any(digest[:8] in actor for actor in actors)


def test_unnamed_token_is_audited_under_its_place_in_the_list(
    client: TestClient, ledger: Ledger
) -> None:
    """A bare token, third in LABLEDGER_API_TOKENS, acts as `admin-3`."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/api/v1/sessions", json=SESSION, headers=headers).status_code == 201
    assert _actors(ledger) == ["api-token:admin-3"]


def test_missing_bearer_token_answers_unauthorized_not_signature(client: TestClient) -> None:
    """No token and an unknown token answer 401 `unauthorized`; webhook signatures are apart."""
    for headers in ({}, {"Authorization": "Bearer " + "x" * 40}):
        answer = client.get("/api/v1/sessions", headers=headers)
        assert answer.status_code == 401
        assert answer.json()["error"] == "unauthorized"
        assert answer.headers["www-authenticate"] == "Bearer"


def _refuse_marked_subjects(ledger: Ledger) -> None:
    """A constraint added behind labledger's back: the database refuses the row itself."""
    with ledger.engine.begin() as conn:
        if ledger.dialect == "postgresql":
            conn.execute(
                text(
                    "ALTER TABLE lab_sessions ADD CONSTRAINT no_marker "
                    "CHECK (subject_id NOT LIKE '%MARKER%')"
                )
            )
        else:
            conn.execute(
                text(
                    "CREATE TRIGGER no_marker BEFORE INSERT ON lab_sessions "
                    "WHEN NEW.subject_id LIKE '%MARKER%' "
                    "BEGIN SELECT RAISE(ABORT, 'refused by no_marker'); END"
                )
            )


def test_database_errors_do_not_log_request_data(ledger: Ledger, tmp_path: Path) -> None:
    """A row the database refuses answers 500 `internal`, and neither the answer nor the
    server's log holds what the client sent (bound values, PostgreSQL's failing row)."""
    _refuse_marked_subjects(ledger)
    secret_subject = "student-MARKER-7c1e55"
    with running_servers(ledger.url, 1, tmp_path, LABLEDGER_LOG_LEVEL="INFO") as (url,):
        answer = httpx2.post(
            f"{url}/api/v1/sessions",
            json=dict(SESSION, subject_id=secret_subject),
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=30,
        )
    assert answer.status_code == 500 and answer.json()["error"] == "internal"
    assert secret_subject not in answer.text
    logged = (tmp_path / "server-0.log").read_text()
    assert "database.error" in logged
    assert secret_subject not in logged
