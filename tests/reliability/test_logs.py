"""Logs: a real `labledger serve` at INFO, with its access log on (the default), ingests and
serves deliveries full of student personal data; none of it may reach its stderr."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.reliability.launch import ExecLauncher, reliability_env
from tests.reliability.results import record_result
from tests.reliability.traffic import AUTH, create_session
from tests.support import body_of, commit, headers_for, push_payload

pytestmark = pytest.mark.slow

AUTHOR = {
    "name": "Quintessa Vanderbilt-Okonkwo",
    "email": "q.vokonkwo@students.example.edu",
    "username": "qvokonkwo-gh",
}
COMMITTER = {
    "name": "Émile Zoltán Þórsson",
    "email": "emile.thorsson@students.example.edu",
    "username": "ezthorsson",
}
PUSHER = {"name": "qvokonkwo-pusher", "email": "quintessa.private@mailbox.example.org"}
SENDER = {"login": "qvokonkwo-sender", "id": 991_337, "type": "User"}
MESSAGE = "Ziggurat fix: sorry for pushing late, my grandmother was ill"
PERSONAL = [
    *AUTHOR.values(),
    *COMMITTER.values(),
    *PUSHER.values(),
    str(SENDER["login"]),
    MESSAGE,
]


def _personal_payload(seed: str, **commit_overrides: Any) -> dict[str, Any]:
    fields = {"author": AUTHOR, "committer": COMMITTER, "message": MESSAGE, **commit_overrides}
    made = commit(seed, **fields)
    payload = push_payload([made])
    payload.update(pusher=PUSHER, sender=SENDER)
    return payload


def _deliveries() -> list[tuple[bytes, dict[str, str], int]]:
    """(body, headers, expected status): recorded, duplicate, conflict, malformed, unsigned."""
    body = body_of(_personal_payload("pii-1"))
    headers = headers_for(body, delivery_id="pii-1")
    other = body_of(_personal_payload("pii-2"))
    broken = body_of(_personal_payload("pii-3", timestamp=["not", "a", "string"]))
    nul = body_of(_personal_payload("pii-4", author=dict(AUTHOR, name=AUTHOR["name"] + "\x00")))
    return [
        (body, headers, 202),
        (body, headers, 200),
        (other, headers_for(other, delivery_id="pii-1"), 409),
        (broken, headers_for(broken), 400),
        (nul, headers_for(nul), 400),
        (other, dict(headers_for(other), **{"x-hub-signature-256": "sha256=" + "0" * 64}), 401),
    ]


def _read_everything_back(client: httpx2.Client, url: str, session_id: int) -> None:
    """The API answers hold the personal data; reading them must not log it either."""
    page = client.get(f"{url}/api/v1/sessions/{session_id}/attempts", headers=AUTH).json()
    assert page["items"] and page["items"][0]["author"]["name"] == AUTHOR["name"]
    sha = page["items"][0]["commit_sha"]
    for path in (f"/api/v1/attempts?commit_sha={sha}", "/api/v1/deliveries/pii-1"):
        assert client.get(url + path, headers=AUTH).status_code == 200


def _leaks(log: str) -> list[str]:
    lowered = log.lower()
    forms = {v for v in PERSONAL} | {json.dumps(v)[1:-1] for v in PERSONAL}
    return sorted(f for f in forms if f.lower() in lowered)


def test_no_personal_data_reaches_the_info_logs(tmp_path: Path, sqlite_template: Path) -> None:
    """Names, e-mails, logins and commit messages never appear in a server's INFO logs."""
    database = tmp_path / "ledger.db"
    database.write_bytes(sqlite_template.read_bytes())
    log = tmp_path / "server.log"
    server = ExecLauncher(access_log=True).start(
        reliability_env(f"sqlite:///{database}", tmp_path), log
    )
    try:
        session_id = create_session(server.url)
        with httpx2.Client(timeout=30) as client:
            for body, headers, status in _deliveries():
                answer = client.post(f"{server.url}/webhooks/github", content=body, headers=headers)
                assert answer.status_code == status, answer.text
            _read_everything_back(client, server.url, session_id)
    finally:
        server.stop()
    text = log.read_text(encoding="utf-8", errors="replace")
    assert '"webhook.answered"' in text and '"webhook.refused"' in text  # INFO and WARNING logged
    assert '"http_request"' in text and '"/webhooks/github"' in text  # the access log was on
    assert _leaks(text) == []
    record_result(
        "no personal data in INFO logs (access log on)",
        "sqlite",
        trials=1,
        inputs=len(_deliveries()) + 4,
        held=["no name, e-mail, login or commit message in stderr"],
        figures={"log lines checked": len(text.splitlines()), "personal values": len(PERSONAL)},
        test="test_logs.py",
    )
