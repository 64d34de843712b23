"""The /api/v1 edge under hostile input: tokens, control characters, odd digits, CSV cells."""

from __future__ import annotations

import csv
import hashlib
import io
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from labledger.cli import main
from labledger.config import Settings
from labledger.core.errors import RepositoryShared
from labledger.http.app import create_app
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.integration.servers import running_servers
from tests.support import SECRET, SIGNER, TOKEN, commit, push_payload, session_spec

ALICE = "alice-admin-token-0123456789abcdef0123"
READER = "reader-token-0123456789abcdef01234567"
AUTH = {"Authorization": f"Bearer {ALICE}"}
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
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


def _attempt(ledger: Ledger) -> int:
    ledger.store.create_session(session_spec(), "test", NOW)
    (attempt_id,) = deliver(ledger.store, push_payload([commit()])).body["attempt_ids"]  # type: ignore[misc]
    return int(attempt_id)


@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x85"])
@pytest.mark.parametrize("field", ["lab_id", "subject_id", "repository_full_name", "branch_glob"])
def test_control_character_in_session_field_answers_400(
    client: TestClient, ledger: Ledger, field: str, char: str
) -> None:
    """NUL, ESC or NEL in a session's text answers 400 on both databases; nothing is stored."""
    answer = client.post(
        "/api/v1/sessions", json=dict(SESSION, **{field: f"a{char}b"}), headers=AUTH
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "malformed" and field in answer.json()["detail"]
    assert ledger.store.count_rows()["lab_sessions"] == 0


@pytest.mark.parametrize(
    "result",
    [
        {"verifier": "ci\x00"},
        {"run_id": "r\x00"},
        {"details": {"log": "ok\x00"}},
        {"details": {"k\x00": 1}},
        {"details": {"steps": [{"name": "\x07bell"}]}},
    ],
)
def test_nul_in_verification_fields_answers_400(
    client: TestClient, ledger: Ledger, result: dict[str, object]
) -> None:
    """A result whose text holds NUL or another control answers 400 on both databases."""
    attempt_id = _attempt(ledger)
    body = {"verifier": "ci", "run_id": "r1", "status": "passed", **result}
    answer = client.post(f"/api/v1/attempts/{attempt_id}/verifications", json=body, headers=AUTH)
    assert answer.status_code == 400, answer.text
    assert ledger.store.count_rows()["verification_results"] == 0


def test_layout_characters_in_details_are_kept(client: TestClient, ledger: Ledger) -> None:
    """TAB, LF and CR in a result's details are text layout, not refused."""
    attempt_id = _attempt(ledger)
    body = {"verifier": "ci", "run_id": "r1", "status": "failed", "details": {"log": "a\tb\r\nc"}}
    answer = client.post(f"/api/v1/attempts/{attempt_id}/verifications", json=body, headers=AUTH)
    assert answer.status_code == 201, answer.text
    assert answer.json()["details"] == {"log": "a\tb\r\nc"}


def test_nul_in_deadline_change_reason_answers_400(client: TestClient, ledger: Ledger) -> None:
    """A deadline change whose reason holds NUL answers 400 and changes nothing."""
    session = ledger.store.create_session(session_spec(), "test", NOW)
    body = {"due_at": "2026-01-01T00:00:00Z", "reason": "extension\x00"}
    path = f"/api/v1/sessions/{session.id}/deadline-changes"
    answer = client.post(path, json=body, headers=AUTH)
    assert answer.status_code == 400 and answer.json()["error"] == "malformed", answer.text
    assert ledger.store.count_rows()["session_changes"] == 0


@pytest.mark.parametrize(
    "path",
    ["/api/v1/deliveries/a%00b", "/api/v1/sessions?lab_id=a%00b", "/api/v1/labs/a%00b/summary"],
)
def test_nul_in_path_or_query_text_answers_400(client: TestClient, path: str) -> None:
    """A NUL in a looked-up id answers 400 on both databases, never a driver error."""
    answer = client.get(path, headers=AUTH)
    assert answer.status_code == 400 and answer.json()["error"] == "malformed", answer.text


@pytest.mark.parametrize("cursor", ["²", "\u0661\u0662", "\uff11", "³⁴"])
def test_unicode_digit_cursor_answers_400(client: TestClient, ledger: Ledger, cursor: str) -> None:
    """Cursors that str.isdigit() accepts but are not ASCII digits answer 400, not 500."""
    session = ledger.store.create_session(session_spec(), "test", NOW)
    for path, name in (
        ("/api/v1/sessions", "cursor"),
        (f"/api/v1/sessions/{session.id}/attempts", "cursor"),
        ("/api/v1/feed", "after"),
    ):
        answer = client.get(path, params={name: cursor}, headers=AUTH)
        assert answer.status_code == 400, (path, answer.text)


@pytest.mark.parametrize("value", ["²", "1_0", " 5", "+5", "5.0", "\u0661"])
def test_numeric_parameters_take_ascii_digits_only(client: TestClient, value: str) -> None:
    """limit, old_size and path ids refuse other spellings of a number (422)."""
    for path, params in (
        ("/api/v1/sessions", {"limit": value}),
        ("/api/v1/feed", {"limit": value}),
        ("/api/v1/checkpoint/consistency", {"old_size": value}),
        (f"/api/v1/sessions/{value}", {}),
    ):
        answer = client.get(path, params=params, headers=AUTH)
        assert answer.status_code == 422, (path, value, answer.text)


def test_feed_wait_takes_plain_decimals_only(client: TestClient) -> None:
    """`wait=0.0` is a wait; `wait=nan`, `wait=1e1` and `wait=²` are refused."""
    assert client.get("/api/v1/feed", params={"wait": "0.0"}, headers=AUTH).status_code == 200
    for value in ("nan", "1e1", "²", "inf"):
        answer = client.get("/api/v1/feed", params={"wait": value}, headers=AUTH)
        assert answer.status_code == 422, (value, answer.text)


def test_csv_cells_starting_with_tab_or_cr_are_neutralised(
    client: TestClient, ledger: Ledger
) -> None:
    """Subject ids stored before control characters were refused, starting with TAB, CR or
    `=`, are quoted in the CSV so that a spreadsheet reads them as text."""
    subjects = ["\t=1+2", "\r@SUM(A1)", "=HYPERLINK(1)", "plain"]
    for i, subject in enumerate(subjects):
        spec = session_spec(subject_id=subject, repository_id=1000 + i)
        ledger.store.create_session(spec, "test", NOW)
    answer = client.get("/api/v1/labs/lab-1/summary", params={"format": "csv"}, headers=AUTH)
    rows = list(csv.reader(io.StringIO(answer.text)))
    cells = [row[1] for row in rows[1:]]
    assert cells == ["'\t=1+2", "'\r@SUM(A1)", "'=HYPERLINK(1)", "plain"]


@pytest.mark.parametrize(
    ("details", "status"),
    [
        ({"n": 2**53}, 201),
        ({"n": -(2**53)}, 201),
        ({"n": 2**53 + 1}, 422),
        ({"n": -(2**53) - 1}, 422),
        ({"deep": [{"n": 2**64}]}, 422),
    ],
)
def test_verification_detail_integers_are_limited_to_2_53(
    client: TestClient, ledger: Ledger, details: dict[str, object], status: int
) -> None:
    """Integers in details beyond ±2^53 (which doubles cannot hold) are refused."""
    attempt_id = _attempt(ledger)
    body = {"verifier": "ci", "run_id": "r1", "status": "passed", "details": details}
    answer = client.post(f"/api/v1/attempts/{attempt_id}/verifications", json=body, headers=AUTH)
    assert answer.status_code == status, answer.text
    if status == 422:
        assert "2^53" in answer.json()["detail"]


def test_second_session_of_a_lab_on_one_repository_is_refused(
    client: TestClient, ledger: Ledger
) -> None:
    """Another subject's session of the same lab on the same repository answers 409 unless
    allow_shared_repository is true; another lab on that repository is fine."""
    assert client.post("/api/v1/sessions", json=SESSION, headers=AUTH).status_code == 201
    other = dict(SESSION, subject_id="student-2")
    refused = client.post("/api/v1/sessions", json=other, headers=AUTH)
    assert refused.status_code == 409 and refused.json()["error"] == "conflict"
    assert "allow_shared_repository" in refused.json()["detail"]
    allowed = dict(other, allow_shared_repository=True)
    assert client.post("/api/v1/sessions", json=allowed, headers=AUTH).status_code == 201
    next_lab = dict(other, lab_id="lab-2")
    assert client.post("/api/v1/sessions", json=next_lab, headers=AUTH).status_code == 201
    assert ledger.store.count_rows()["lab_sessions"] == 3


def test_concurrent_sessions_on_one_repository_make_one(ledger: Ledger) -> None:
    """Eight creations of one lab's session on one repository at once: exactly one is made."""
    barrier = threading.Barrier(8)

    def create(i: int) -> str:
        barrier.wait()
        try:
            spec = session_spec(subject_id=f"student-{i}")
            ledger.store.create_session(spec, "test", NOW, allow_shared_repository=False)
        except RepositoryShared:
            return "refused"
        return "made"

    with ThreadPoolExecutor(8) as pool:
        outcomes = sorted(pool.map(create, range(8)))
    assert outcomes == ["made"] + ["refused"] * 7
    assert ledger.store.count_rows()["lab_sessions"] == 1


def test_second_session_on_one_repository_is_refused_by_the_cli(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sessions create` refuses a second session of a lab on a repository in one line, and
    makes it with --allow-shared-repository."""
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", ledger.url)
    for name in ("LABLEDGER_CONFIG", "LABLEDGER_API_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    create = ["sessions", "create", "--lab-id", "lab-1", "--repository-id", "42"]
    assert main([*create, "--subject-id", "s1"]) == 0
    capsys.readouterr()
    assert main([*create, "--subject-id", "s2"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allow-shared-repository" in err
    assert main([*create, "--subject-id", "s2", "--allow-shared-repository"]) == 0
    assert ledger.store.count_rows()["lab_sessions"] == 2
