"""Crash: `kill -9` the server at random moments during concurrent ingest, restart it,
redeliver every delivery, and the ledger is exactly the expected one and verifies intact.
The second scenario sends BATCH deliveries at once, so that the server's group commit
(storage/group_commit.py) takes many into one transaction, and kills it while they are in flight.

Trials: LABLEDGER_TEST_CRASH_TRIALS (3 by default, 50 under LABLEDGER_TEST_RELIABILITY=long),
each with LABLEDGER_TEST_CRASH_DELIVERIES distinct deliveries; LABLEDGER_TEST_SEED replays a run.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.conftest import Ledger
from tests.reliability.conftest import Budget
from tests.reliability.expected import (
    ExpectedLedger,
    all_or_nothing_differences,
    ledger_counts,
    ledger_differences,
    settle_and_verify,
)
from tests.reliability.launch import ForkLauncher, ServerProcess, reliability_env
from tests.reliability.results import record_result
from tests.reliability.traffic import (
    Answer,
    PlannedDelivery,
    plan_deliveries,
    redeliver,
    send_concurrently,
)
from tests.support import session_spec

pytestmark = pytest.mark.slow
PER_COMMIT = "labledger_deliveries_per_commit"

CLIENTS = 4
BATCH = 16  # LABLEDGER_WEBHOOK_CONCURRENCY's default: all in the server at once
LOAD_TIMEOUT_S = 120.0
MAX_EXTRA_DELAY_S = 0.03


@dataclass
class CrashRun:
    """One crash test: the server, what must be in the ledger, and the figures so far."""

    ledger: Ledger
    launcher: ForkLauncher
    env: dict[str, str]
    log: Path
    rng: random.Random
    server: ServerProcess | None = None
    expected: ExpectedLedger = field(default_factory=ExpectedLedger)
    pool: list[dict[str, Any]] = field(default_factory=list)
    figures: Counter[str] = field(default_factory=Counter)

    def restart(self) -> None:
        self.server = self.launcher.start(self.env, self.log)
        self.figures["server starts"] += 1


def _open_sessions(ledger: Ledger) -> dict[int, str]:
    now = datetime.now(UTC)
    made = {}
    for glob in ("*", "feature/*"):
        session = ledger.store.create_session(session_spec(branch_glob=glob), "test", now)
        made[session.id] = glob
    return made


def _ingest_until_killed(
    run: CrashRun, planned: list[PlannedDelivery], clients: int = CLIENTS
) -> list[Answer]:
    """Send `planned` from `clients` threads and kill -9 the server after a random number of
    answers plus a random few milliseconds, i.e. anywhere inside a request or between them."""
    server = run.server
    assert server is not None
    kill_after = run.rng.randrange(len(planned))
    due = threading.Event()
    answered = itertools.count(1)  # next() is atomic: the clients share it

    def on_answer(_answer: Answer) -> None:
        if next(answered) >= kill_after:
            due.set()

    result: list[list[Answer]] = []
    load = threading.Thread(
        target=lambda: result.append(
            send_concurrently(server.url, planned, clients, on_answer=on_answer)
        )
    )
    load.start()
    if kill_after > 0:
        due.wait(LOAD_TIMEOUT_S)
    time.sleep(run.rng.uniform(0, MAX_EXTRA_DELAY_S))
    if clients > CLIENTS:
        _count_shared_commits(run, server.url)
    server.kill9()
    run.figures["kills"] += 1
    load.join(LOAD_TIMEOUT_S)
    assert not load.is_alive(), "clients still running after the kill"
    return result[0]


def _count_shared_commits(run: CrashRun, url: str) -> None:
    """Add the commits that carried more than one delivery so far (the /metrics histogram)."""
    try:
        text = httpx2.get(f"{url}/metrics", timeout=1.0).text
    except httpx2.TransportError:
        return
    wanted = {f'{PER_COMMIT}_bucket{{le="1.0"}}': "alone", f"{PER_COMMIT}_count": "all"}
    found = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in wanted:
            found[wanted[name]] = int(float(value))
    if len(found) == 2:
        run.figures["commits carrying several deliveries (before the kill)"] += (
            found["all"] - found["alone"]
        )


def _check_answers(run: CrashRun, before: list[Answer], after: dict[str, Answer]) -> None:
    """Before the kill only 202 or no answer; a redelivery answers as the first receipt did."""
    assert {a.status for a in before} <= {202, None}, [a for a in before if a.status != 202]
    for a in before:
        again = after[a.delivery_id]
        if a.status == 202:
            assert (again.status, again.attempt_ids, again.push_id) == (
                200,
                a.attempt_ids,
                a.push_id,
            ), (a, again)
    for again in after.values():
        assert again.status in (200, 202), again
    acknowledged = {a.delivery_id for a in before if a.status == 202}
    unacknowledged = [a for i, a in after.items() if i not in acknowledged]
    run.figures["acknowledged before the kill"] += len(acknowledged)
    run.figures["in flight at the kill (no answer)"] += sum(a.status is None for a in before)
    run.figures["never sent before the kill"] += len(after) - len(before)
    run.figures["committed but unacknowledged (redelivery answered duplicate)"] += sum(
        a.status == 200 for a in unacknowledged
    )
    run.figures["recorded only by the redelivery"] += sum(a.status == 202 for a in after.values())


def _trial(run: CrashRun, trial: int, deliveries: int, clients: int = CLIENTS) -> None:
    planned = plan_deliveries(f"crash-{clients}-{trial}", deliveries, run.rng, run.pool)
    run.expected.add(planned)
    before = _ingest_until_killed(run, planned, clients)
    acknowledged = {a.delivery_id for a in before if a.status == 202}
    partial = all_or_nothing_differences(run.ledger.engine, run.expected, acknowledged)
    assert not partial, f"trial {trial}, before redelivery: {partial[:10]}"
    run.restart()
    assert run.server is not None
    after = redeliver(run.server.url, planned)
    _check_answers(run, before, after)
    differences = ledger_differences(run.ledger.engine, run.expected)
    assert not differences, f"trial {trial}: {differences[:10]}"
    report = settle_and_verify(run.ledger.engine)
    run.figures["verify runs intact"] += 1
    run.figures["entries verified (last run)"] = report.entries


def _crash_trials(
    ledger: Ledger,
    tmp_path: Path,
    budget: Budget,
    fork_launcher: ForkLauncher,
    deliveries: int,
    clients: int,
) -> tuple[CrashRun, int]:
    """Every trial of one crash scenario against one server, restarted after each kill."""
    seed = int(os.environ.get("LABLEDGER_TEST_SEED", random.randrange(2**32)))
    run = CrashRun(
        ledger,
        fork_launcher,
        reliability_env(ledger.url, tmp_path),
        tmp_path / "server.log",
        random.Random(seed),
    )
    run.expected.sessions = _open_sessions(ledger)
    run.restart()
    try:
        for trial in range(budget.crash_trials):
            try:
                _trial(run, trial, deliveries, clients=clients)
            except AssertionError as exc:
                raise AssertionError(f"seed {seed}, trial {trial}: {exc}") from exc
    finally:
        if run.server is not None:
            run.server.stop()
    return run, seed


def _record(
    scenario: str, ledger: Ledger, budget: Budget, run: CrashRun, seed: int, held: list[str]
) -> None:
    record_result(
        scenario,
        ledger.dialect,
        trials=budget.crash_trials,
        inputs=len(run.expected.deliveries),
        held=held,
        figures={"seed": seed, **dict(run.figures), **ledger_counts(ledger.engine)},
        test="test_crash.py",
    )


def test_kill_9_during_concurrent_ingest_loses_and_doubles_nothing(
    ledger: Ledger, tmp_path: Path, budget: Budget, fork_launcher: ForkLauncher
) -> None:
    """Kill -9 at random moments, restart, redeliver everything: the ledger is exact and intact."""
    run, seed = _crash_trials(
        ledger, tmp_path, budget, fork_launcher, budget.crash_deliveries, CLIENTS
    )
    _record(
        "crash (kill -9 during concurrent ingest, restart, redeliver all)",
        ledger,
        budget,
        run,
        seed,
        [
            "no delivery, push or attempt lost or doubled",
            "redelivery answers as the first receipt (same attempt ids)",
            "verify intact after every trial",
        ],
    )


def test_kill_9_while_a_batch_is_in_flight_loses_and_doubles_nothing(
    ledger: Ledger, tmp_path: Path, budget: Budget, fork_launcher: ForkLauncher
) -> None:
    """BATCH deliveries at once, kill -9 while the group commit holds them: nothing
    acknowledged is lost, nothing doubles, redelivery completes the rest, verify is intact."""
    run, seed = _crash_trials(ledger, tmp_path, budget, fork_launcher, BATCH, BATCH)
    _record(
        f"crash (kill -9 while a batch of {BATCH} deliveries is in flight, restart, redeliver)",
        ledger,
        budget,
        run,
        seed,
        [
            "nothing acknowledged lost, nothing doubled",
            "redelivery completes the rest and answers as the first receipt",
            "verify intact after every trial",
        ],
    )
