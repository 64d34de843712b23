"""`POST /webhooks/gitlab` and `POST /webhooks/gitea` over HTTP, `labledger ingest` of every
forge, and one lab holding sessions on GitHub, GitLab and Gitea at once."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from labledger.cli import main
from labledger.config import Settings
from labledger.http.app import create_app
from labledger.services.saved import format_saved_delivery
from labledger.storage.merkle_log import SqlLog
from tests.conftest import Ledger
from tests.forge_support import (
    GITEA_REPO_ID,
    GITEA_SECRET,
    GITLAB_PROJECT_ID,
    GITLAB_SIGNING,
    GITLAB_TOKEN,
    gitea_commit,
    gitea_headers,
    gitea_payload,
    gitlab_commit,
    gitlab_headers,
    gitlab_payload,
)
from tests.support import REPO_ID, SECRET, SIGNER, TOKEN, body_of, commit, headers_for, push_payload

ADMIN = {"Authorization": f"Bearer {TOKEN}"}
FORGES = {
    "github": (REPO_ID, "octo/lab3-ada"),
    "gitlab": (GITLAB_PROJECT_ID, "course-2026/lab3-bea"),
    "gitea": (GITEA_REPO_ID, "course/lab3-cy"),
}


@pytest.fixture
def client(ledger: Ledger) -> Iterator[TestClient]:
    settings = Settings.model_validate(
        {
            "github_webhook_secret": SECRET,
            "gitlab_webhook_token": GITLAB_TOKEN,
            "gitlab_signing_token": f"uni2@*={GITLAB_SIGNING}",
            "gitea_webhook_secret": GITEA_SECRET,
            "api_tokens": TOKEN,
        }
    )
    with TestClient(create_app(settings, ledger.store, SIGNER)) as made:
        yield made


def _open(client: TestClient, forge: str, subject: str, repository_id: int, name: str) -> int:
    session = {
        "lab_id": "lab-3",
        "subject_id": subject,
        "forge": forge,
        "repository_id": repository_id,
        "repository_full_name": name,
        "opens_at": "2025-01-01T00:00:00Z",
        "due_at": "2099-01-01T00:00:00Z",
    }
    answer = client.post("/api/v1/sessions", json=session, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def _push(client: TestClient, forge: str, seed: str) -> dict[str, object]:
    if forge == "gitlab":
        body = body_of(gitlab_payload([gitlab_commit(seed)]))
        headers = gitlab_headers(body)
    elif forge == "gitea":
        body = body_of(gitea_payload([gitea_commit(seed)]))
        headers = gitea_headers(body, family="forgejo")
    else:
        body = body_of(push_payload([commit(seed)]))
        headers = headers_for(body)
    answer = client.post(f"/webhooks/{forge}", content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    return dict(answer.json())


def test_one_lab_holds_sessions_on_all_three_forges_with_one_summary_and_one_csv(
    client: TestClient,
) -> None:
    """Three students on three forges: one lab summary and one CSV, each row naming its forge."""
    sessions = {forge: _open(client, forge, f"student-{forge}", *FORGES[forge]) for forge in FORGES}
    attempts = {forge: _push(client, forge, f"lab3-{forge}")["attempt_ids"] for forge in FORGES}
    assert all(len(ids) == 1 for ids in attempts.values())  # type: ignore[arg-type]
    summary = client.get("/api/v1/labs/lab-3/summary", headers=ADMIN).json()
    by_session = {s["session_id"]: s for s in summary["sessions"]}
    for forge, session_id in sessions.items():
        row = by_session[session_id]
        assert (row["forge"], row["attempts"]) == (forge, 1)
        assert row["counting_attempt"]["forge"] == forge
    answer = client.get("/api/v1/labs/lab-3/summary?format=csv", headers=ADMIN)
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert sorted((r["forge"], r["subject_id"]) for r in rows) == sorted(
        (forge, f"student-{forge}") for forge in FORGES
    )


def test_feed_names_the_forge_of_every_attempt_and_push(client: TestClient, ledger: Ledger) -> None:
    """Downstream consumers read the forge from each feed item."""
    _open(client, "gitlab", "s", *FORGES["gitlab"])
    _push(client, "gitlab", "feed")
    SqlLog(ledger.engine).integrate(SIGNER)
    items = client.get("/api/v1/feed", headers=ADMIN).json()["items"]
    forges = {(i["type"], (i.get("attempt") or i.get("push") or {}).get("forge")) for i in items}
    assert forges == {("attempt", "gitlab"), ("push", "gitlab")}


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/webhooks/gitlab", {"x-gitlab-token": "guess"}, 401),
        ("/webhooks/gitlab", {"content-type": "text/plain"}, 415),
        ("/webhooks/gitlab", {"x-gitlab-event": "Note Hook"}, 200),
        ("/webhooks/gitea", {"x-gitea-signature": "00"}, 401),
        ("/webhooks/gitea", {"x-gitea-event": "issues"}, 200),
    ],
)
def test_route_answers(client: TestClient, path: str, headers: dict[str, str], status: int) -> None:
    """Wrong credentials 401, wrong content type 415, other events acknowledged and ignored."""
    if path.endswith("gitlab"):
        body = body_of(gitlab_payload([gitlab_commit("route")]))
        sent = gitlab_headers(body) | headers
    else:
        body = body_of(gitea_payload([gitea_commit("route")]))
        sent = {k: v for k, v in gitea_headers(body).items() if k != "x-hub-signature-256"}
        sent |= headers
    answer = client.post(path, content=body, headers=sent)
    assert answer.status_code == status, answer.text
    assert client.get("/openapi.json").json()["paths"][path]["post"]


def test_gitlab_instance_with_a_signing_token_refuses_its_unsigned_deliveries(
    client: TestClient,
) -> None:
    """uni2 signs: its signed delivery is recorded under gitlab:uni2, never under gitlab."""
    _open(client, "gitlab:uni2", "s2", GITLAB_PROJECT_ID, "c/l")
    body = body_of(gitlab_payload([gitlab_commit("uni2")]))
    signed = gitlab_headers(body, token=None, signing=GITLAB_SIGNING)
    answer = client.post("/webhooks/gitlab", content=body, headers=signed)
    assert answer.status_code == 202 and len(answer.json()["attempt_ids"]) == 1
    path = f"/api/v1/deliveries/{answer.json()['delivery_id']}"
    assert client.get(path, headers=ADMIN).status_code == 404  # not a GitHub delivery
    assert client.get(path, params={"forge": "gitlab"}, headers=ADMIN).status_code == 404
    found = client.get(path, params={"forge": "gitlab:uni2"}, headers=ADMIN).json()
    assert found["delivery"]["forge"] == "gitlab:uni2"


def test_ingest_records_saved_deliveries_of_every_forge(
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Saved GitHub, GitLab, Gitea and Forgejo deliveries go through their own forge's checks."""
    for name in ("LABLEDGER_CONFIG", "LABLEDGER_API_TOKENS", "LABLEDGER_GITHUB_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", ledger.url)
    monkeypatch.setenv("LABLEDGER_GITLAB_WEBHOOK_TOKEN", GITLAB_TOKEN)
    monkeypatch.setenv("LABLEDGER_GITEA_WEBHOOK_SECRET", GITEA_SECRET)
    files = []
    for n, (body, headers) in enumerate(
        [
            (b := body_of(gitlab_payload([gitlab_commit("i1")])), gitlab_headers(b)),
            (b := body_of(gitea_payload([gitea_commit("i2")])), gitea_headers(b)),
            (b := body_of(gitea_payload([gitea_commit("i3")])), gitea_headers(b, family="forgejo")),
            (b := body_of(push_payload([commit("i4")])), headers_for(b)),
        ]
    ):
        files.append(tmp_path / f"{n}.http")
        files[-1].write_bytes(format_saved_delivery(headers, body))
    assert main(["ingest", *map(str, files), str(files[0])]) == 1
    out = capsys.readouterr()
    assert "1 duplicate, 3 recorded, 1 refused" in out.out
    assert "no webhook secret is configured" in out.err  # the GitHub one: no secret, refused
    assert ledger.store.count_rows()["deliveries"] == 3


def test_cli_opens_sessions_on_a_named_instance_and_refuses_unknown_forges(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sessions create --forge gitlab:uni2` works; a forge with no route is refused."""
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", ledger.url)
    base = ["sessions", "create", "--lab-id", "l", "--subject-id", "s", "--repository-id", "42"]
    assert main([*base, "--forge", "gitlab:uni2", "--json"]) == 0
    assert '"forge": "gitlab:uni2"' in capsys.readouterr().out
    assert main([*base, "--forge", "bitbucket"]) != 0
    assert main([*base, "--forge", "gitlab:far-too-long-name"]) != 0
    err = capsys.readouterr().err
    assert "--forge" in err and "gitlab:NAME" in err and "Traceback" not in err
    assert len(ledger.store.list_sessions(lab_id="l", after=0, limit=10)) == 1
