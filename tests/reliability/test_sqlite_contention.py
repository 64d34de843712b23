"""SQLite contention: several server processes and many client threads write one SQLite file
while another connection holds the write lock (`BEGIN IMMEDIATE`) past the 5 s busy timeout.

A locked database must answer 503 with Retry-After and write nothing for that delivery (each
server queues its own writers on a process lock, so the one waiting in SQLite gets the 503);
redelivering the 503s (and everything else) yields exactly the expected ledger, intact.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from labledger.storage.engine import SQLITE_BUSY_TIMEOUT_S
from tests.conftest import Ledger
from tests.reliability.conftest import Budget
from tests.reliability.expected import (
    ExpectedLedger,
    all_or_nothing_differences,
    ledger_counts,
    ledger_differences,
    settle_and_verify,
    stored_delivery_ids,
)
from tests.reliability.launch import ForkLauncher, ServerProcess, reliability_env
from tests.reliability.results import record_result
from tests.reliability.traffic import (
    Answer,
    PlannedDelivery,
    create_session,
    plan_deliveries,
    redeliver,
    send_concurrently,
)

pytestmark = pytest.mark.slow

SERVERS = 2
CLIENTS = 8
HOLD_S = SQLITE_BUSY_TIMEOUT_S + 2.5
LOAD_TIMEOUT_S = 180.0


def _send(
    servers: list[ServerProcess], chunk: list[PlannedDelivery], answers: list[Answer]
) -> None:
    send_concurrently(
        lambda i: servers[i % len(servers)].url,
        chunk,
        CLIENTS,
        on_answer=answers.append,
        give_up_on_no_answer=False,
    )


def _load_under_lock(
    ledger: Ledger, servers: list[ServerProcess], planned: list[PlannedDelivery], rounds: int
) -> list[Answer]:
    """`rounds` times: another connection takes SQLite's write lock (`BEGIN IMMEDIATE`) while
    the database is idle, a share of the deliveries is sent, and the lock is held past the
    servers' busy timeout before it is released and the share completes."""
    answers: list[Answer] = []
    conn = sqlite3.connect(ledger.engine.url.database or "", timeout=60, isolation_level=None)
    try:
        for r in range(rounds):
            conn.execute("BEGIN IMMEDIATE")
            load = threading.Thread(target=_send, args=(servers, planned[r::rounds], answers))
            load.start()
            time.sleep(HOLD_S)
            conn.execute("ROLLBACK")
            load.join(LOAD_TIMEOUT_S)
            assert not load.is_alive(), "clients still waiting long after the lock was released"
    finally:
        conn.close()
    return answers


def _check_contention_answers(ledger: Ledger, answers: list[Answer]) -> Counter[str]:
    """Only 202 or 503 + Retry-After; a 503 left no trace of its delivery."""
    assert all(a.status in (202, 503) for a in answers), [
        a for a in answers if a.status not in (202, 503)
    ][:3]
    refused = {a.delivery_id for a in answers if a.status == 503}
    assert refused, "the held lock provoked no 503 at all"
    assert all(a.retry_after for a in answers if a.status == 503)
    written = refused & stored_delivery_ids(ledger.engine)
    assert not written, f"answered 503 but stored: {sorted(written)[:5]}"
    return Counter({"202 recorded": len(answers) - len(refused), "503 locked": len(refused)})


def test_a_locked_sqlite_database_answers_503_and_loses_nothing(
    sqlite_ledger: Ledger, tmp_path: Path, budget: Budget, fork_launcher: ForkLauncher
) -> None:
    """Writers blocked past the busy timeout get 503 + Retry-After; redelivery completes exactly."""
    rng = random.Random(int(os.environ.get("LABLEDGER_TEST_SEED", random.randrange(2**32))))
    env = reliability_env(sqlite_ledger.url, tmp_path)
    servers: list[ServerProcess] = []
    try:
        for i in range(SERVERS):
            servers.append(fork_launcher.start(env, tmp_path / f"server-{i}.log"))
        expected = ExpectedLedger(sessions={create_session(servers[0].url): "*"})
        planned = plan_deliveries("contention", budget.contention_deliveries, rng, [])
        expected.add(planned)
        answers = _load_under_lock(sqlite_ledger, servers, planned, budget.contention_rounds)
        figures = _check_contention_answers(sqlite_ledger, answers)
        acknowledged = {a.delivery_id for a in answers if a.status == 202}
        partial = all_or_nothing_differences(sqlite_ledger.engine, expected, acknowledged)
        assert not partial, partial[:10]
        again = redeliver(servers[1].url, planned)
        assert all(a.status in (200, 202) for a in again.values()), list(again.values())[:3]
        differences = ledger_differences(sqlite_ledger.engine, expected)
        assert not differences, differences[:10]
        report = settle_and_verify(sqlite_ledger.engine)
    finally:
        for server in servers:
            server.stop()
    record_result(
        "SQLite contention (write lock held past the 5 s busy timeout)",
        "sqlite",
        trials=budget.contention_rounds,
        inputs=len(planned),
        held=[
            "a locked database answers 503 + Retry-After, never 500",
            "a 503 writes nothing; acknowledged deliveries complete",
            "redelivery completes: ledger exact, verify intact",
        ],
        figures={
            "server processes": SERVERS,
            "client threads": CLIENTS,
            "lock held (s)": HOLD_S,
            **dict(figures),
            **ledger_counts(sqlite_ledger.engine),
            "entries verified": report.entries,
        },
        test="test_sqlite_contention.py",
    )
