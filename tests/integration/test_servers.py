"""Real server processes sharing one database under a storm of duplicate deliveries."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest

from labledger.storage.verification import verify_database
from tests.conftest import Ledger
from tests.integration.servers import running_servers
from tests.support import SIGNER, body_of, commit, headers_for, push_payload, session_spec

pytestmark = pytest.mark.slow


def _storm(
    urls: list[str], body: bytes, headers: dict[str, str], copies: int
) -> list[httpx2.Response]:
    with httpx2.Client(timeout=30.0) as client, ThreadPoolExecutor(max_workers=copies) as pool:
        futures = [
            pool.submit(
                client.post, f"{urls[i % len(urls)]}/webhooks/github", content=body, headers=headers
            )
            for i in range(copies)
        ]
        return [f.result() for f in futures]


def _check_one_record_set(ledger: Ledger, answers: list[httpx2.Response]) -> None:
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * (len(answers) - 1) + [202], statuses
    assert len({tuple(a.json()["attempt_ids"]) for a in answers}) == 1
    counts = ledger.store.count_rows()
    assert (counts["deliveries"], counts["pushes"], counts["attempts"]) == (1, 1, 3)
    # The servers' background integrators logged everything, the last round at shutdown.
    report = verify_database(ledger.engine, SIGNER.verifier)
    assert report.ok and report.pending == 0, report.problems
    assert counts["log_queue"] == 0 and report.entries == counts["log_entries"]


def test_two_servers_as_the_app_role_record_one_event_once(
    pg_ledger: Ledger, app_role: str, tmp_path: Path
) -> None:
    """50 concurrent copies of one event, sent to two servers running as the restricted role."""
    pg_ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    body = body_of(push_payload([commit(), commit(), commit()]))
    headers = headers_for(body, delivery_id="storm-pg")
    with running_servers(app_role, 2, tmp_path) as urls:
        answers = _storm(urls, body, headers, 50)
    _check_one_record_set(pg_ledger, answers)


def test_two_servers_on_one_sqlite_file_record_one_event_once(
    sqlite_ledger: Ledger, tmp_path: Path
) -> None:
    """The same storm against two processes sharing the default embedded database."""
    ledger = sqlite_ledger
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    body = body_of(push_payload([commit(), commit(), commit()]))
    headers = headers_for(body, delivery_id="storm-sqlite")
    with running_servers(ledger.url, 2, tmp_path) as urls:
        answers = _storm(urls, body, headers, 50)
    _check_one_record_set(ledger, answers)
