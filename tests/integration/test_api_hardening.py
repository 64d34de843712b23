"""The /api/v1 edge under hostile input: tokens, control characters, odd digits, CSV cells."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from labledger.config import Settings
from labledger.http.app import create_app
from tests.conftest import Ledger
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
