"""Two real servers per database under a storm of one GitLab or Gitea event, sent 50 times."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest

from labledger.storage.verification import verify_database
from tests.conftest import Ledger
from tests.forge_support import (
    GITEA_REPO_ID,
    GITEA_SECRET,
    GITLAB_PROJECT_ID,
    GITLAB_TOKEN,
    gitea_commit,
    gitea_headers,
    gitea_payload,
    gitlab_commit,
    gitlab_headers,
    gitlab_payload,
)
from tests.integration.servers import running_servers
from tests.support import SIGNER, body_of, session_spec

pytestmark = pytest.mark.slow
SETTINGS = {
    "LABLEDGER_GITLAB_WEBHOOK_TOKEN": GITLAB_TOKEN,
    "LABLEDGER_GITEA_WEBHOOK_SECRET": GITEA_SECRET,
}


def _event(forge: str) -> tuple[bytes, dict[str, str], int]:
    if forge == "gitlab":
        body = body_of(gitlab_payload([gitlab_commit(f"storm-{i}") for i in range(3)]))
        return body, gitlab_headers(body, key=f"storm-{forge}"), GITLAB_PROJECT_ID
    body = body_of(gitea_payload([gitea_commit(f"storm-{i}") for i in range(3)]))
    return body, gitea_headers(body, delivery_id="storm", family="forgejo"), GITEA_REPO_ID


def _storm(urls: list[str], forge: str, body: bytes, headers: dict[str, str]) -> list[int]:
    with httpx2.Client(timeout=30.0) as client, ThreadPoolExecutor(max_workers=50) as pool:
        futures = [
            pool.submit(
                client.post,
                f"{urls[i % len(urls)]}/webhooks/{forge}",
                content=body,
                headers=headers,
            )
            for i in range(50)
        ]
        answers = [f.result() for f in futures]
    assert len({tuple(a.json()["attempt_ids"]) for a in answers}) == 1
    return sorted(a.status_code for a in answers)


def _check(ledger: Ledger, statuses: list[int]) -> None:
    assert statuses == [200] * 49 + [202], statuses
    counts = ledger.store.count_rows()
    assert (counts["deliveries"], counts["pushes"], counts["attempts"]) == (1, 1, 3)
    report = verify_database(ledger.engine, SIGNER.verifier)
    assert report.ok and report.pending == 0, report.problems


@pytest.mark.parametrize("forge", ["gitlab", "gitea"])
def test_two_servers_as_the_app_role_record_one_forge_event_once(
    pg_ledger: Ledger, app_role: str, tmp_path: Path, forge: str
) -> None:
    """50 concurrent copies of one event to two PostgreSQL servers: recorded once."""
    body, headers, repository_id = _event(forge)
    spec = session_spec(forge=forge, repository_id=repository_id)
    pg_ledger.store.create_session(spec, "test", datetime.now(UTC))
    with running_servers(app_role, 2, tmp_path, **SETTINGS) as urls:
        statuses = _storm(urls, forge, body, headers)
    _check(pg_ledger, statuses)


@pytest.mark.parametrize("forge", ["gitlab", "gitea"])
def test_two_servers_on_one_sqlite_file_record_one_forge_event_once(
    sqlite_ledger: Ledger, tmp_path: Path, forge: str
) -> None:
    """The same storm against two processes sharing the embedded database."""
    body, headers, repository_id = _event(forge)
    spec = session_spec(forge=forge, repository_id=repository_id)
    sqlite_ledger.store.create_session(spec, "test", datetime.now(UTC))
    with running_servers(sqlite_ledger.url, 2, tmp_path, **SETTINGS) as urls:
        statuses = _storm(urls, forge, body, headers)
    _check(sqlite_ledger, statuses)
