"""Invariant 11 at the edges: pick-up answers, /api/v1/gaps, the gauge, summaries and the CLI."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from labledger.cli import main
from labledger.config import Settings
from labledger.core.model import ZERO_SHA
from labledger.http.app import create_app
from tests.conftest import Ledger
from tests.support import (
    REPO_ID,
    SECRET,
    SIGNER,
    TOKEN,
    body_of,
    commit,
    headers_for,
    push_payload,
)

ADMIN = {"Authorization": f"Bearer {TOKEN}"}
READER = {"Authorization": "Bearer read-token-for-the-completeness-tests"}
SESSION = {
    "lab_id": "lab-9",
    "subject_id": "student-1",
    "repository_id": REPO_ID,
    "opens_at": "2025-01-01T00:00:00Z",
    "due_at": "2026-01-01T00:00:00Z",
}


@pytest.fixture
def client(ledger: Ledger) -> Iterator[TestClient]:
    settings = Settings.model_validate(
        {
            "github_webhook_secret": SECRET,
            "api_tokens": f"read:read-token-for-the-completeness-tests,{TOKEN}",
        }
    )
    with TestClient(create_app(settings, ledger.store, SIGNER)) as made:
        yield made


def _post(client: TestClient, payload: dict[str, object]) -> dict[str, object]:
    body = body_of(payload)
    answer = client.post("/webhooks/github", content=body, headers=headers_for(body))
    assert answer.status_code == 202, answer.text
    result: dict[str, object] = answer.json()
    return result


def test_session_created_over_http_says_how_many_attempts_it_picked_up(
    client: TestClient,
) -> None:
    """POST /api/v1/sessions after the pushes answers picked_up_attempts and lists them."""
    first = _post(client, push_payload([commit(), commit()]))
    assert first["attempt_ids"] == [] and first["reason"] == f"no session for repository {REPO_ID}"
    made = client.post("/api/v1/sessions", json=SESSION, headers=ADMIN)
    assert made.status_code == 201 and made.json()["picked_up_attempts"] == 2
    listed = client.get(f"/api/v1/sessions/{made.json()['id']}/attempts", headers=READER)
    assert len(listed.json()["items"]) == 2


def test_gaps_route_gauge_summary_and_csv_report_a_missing_push(client: TestClient) -> None:
    """A missing push shows in /api/v1/gaps, the gauge, the session summary and the lab CSV."""
    made = client.post("/api/v1/sessions", json=SESSION, headers=ADMIN).json()
    a, c = commit(), commit()
    _post(client, push_payload([a], before=ZERO_SHA, created=True, pushed_at=1_764_000_000))
    later = _post(client, push_payload([c], before=commit()["id"], pushed_at=1_764_000_600))

    gaps = client.get("/api/v1/gaps", headers=READER)
    assert gaps.status_code == 200
    assert [g["push_id"] for g in gaps.json()["items"]] == [later["push_id"]]
    assert client.get("/api/v1/gaps").status_code == 401
    assert client.get("/api/v1/gaps?forge=git%00hub", headers=READER).status_code == 422
    mine = client.get(f"/api/v1/gaps?forge=github&repository_id={REPO_ID}", headers=READER)
    assert len(mine.json()["items"]) == 1
    assert "labledger_push_chain_gaps 1.0" in client.get("/metrics").text
    summary = client.get(f"/api/v1/sessions/{made['id']}/summary", headers=READER).json()
    assert summary["gaps"] == 1
    sheet = client.get("/api/v1/labs/lab-9/summary?format=csv", headers=READER).text
    (row,) = list(csv.DictReader(io.StringIO(sheet)))
    assert row["gaps"] == "1"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, ledger: Ledger) -> Ledger:
    for name in ("LABLEDGER_CONFIG", "LABLEDGER_API_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", ledger.url)
    monkeypatch.setenv("LABLEDGER_GITHUB_WEBHOOK_SECRET", SECRET)
    return ledger


HEADER = "lab_id,subject_id,repository_id,repository_name,opens_at,due_at\n"


def _roster(tmp_path: Path, *rows: str) -> str:
    path = tmp_path / "roster.csv"
    path.write_text(HEADER + "".join(f"{r}\n" for r in rows), encoding="utf-8")
    return str(path)


def test_sessions_import_is_all_or_nothing(
    env: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One bad row creates no session; a good file creates all, and re-importing adds none."""
    good = "lab-9,s-1,101,octo/a,2025-01-01T00:00:00Z,2026-01-01T00:00:00Z"
    bad = "lab-9,s-2,102,octo/b,2025-01-01T00:00:00Z,2024-01-01T00:00:00Z"
    assert main(["sessions", "import", _roster(tmp_path, good, bad)]) == 1
    assert env.store.count_rows()["lab_sessions"] == 0
    other = "lab-9,s-2,102,octo/b,2025-01-01T00:00:00Z,"
    roster = _roster(tmp_path, good, other)
    assert main(["sessions", "import", "--dry-run", roster]) == 0
    assert env.store.count_rows()["lab_sessions"] == 0
    assert "dry run: 2 to create" in capsys.readouterr().out
    assert main(["sessions", "import", roster]) == 0
    assert main(["sessions", "import", roster]) == 0
    assert env.store.count_rows()["lab_sessions"] == 2
    assert "created 0 sessions (none), 2 already present" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("row", "named"),
    [
        ("lab-9,s-1,not-a-number,,,", "row 2, repository_id:"),
        ("lab-9,s-1,101,,2025-01-01,", "row 2, opens_at:"),
        (",s-1,101,,,", "row 2, lab_id:"),
        ("lab-9,s-1,101,,2025-02-01T00:00:00Z,2025-01-01T00:00:00Z", "row 2: due_at is before"),
    ],
)
def test_sessions_import_names_row_and_field(
    env: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str], row: str, named: str
) -> None:
    """A bad cell is one line naming its row and field, with nothing created."""
    good = "lab-9,s-0,100,,2025-01-01T00:00:00Z,"
    capsys.readouterr()
    assert main(["sessions", "import", _roster(tmp_path, good, row)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named.replace("row 2", "row 3") in err, err
    assert env.store.count_rows()["lab_sessions"] == 0


def test_gaps_verb_lists_open_gaps(env: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    """`labledger gaps --json` lists the push whose predecessor is missing."""
    from tests.contract.helpers import deliver

    deliver(env.store, push_payload([commit()], before=ZERO_SHA, created=True))
    later = deliver(env.store, push_payload([commit()], before=commit()["id"]))
    capsys.readouterr()
    assert main(["gaps", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [g["push_id"] for g in listed] == [later.body["push_id"]]
