"""Database outage: a private PostgreSQL cluster is stopped (`-m immediate`) under load.

While it is down every webhook answer is 503 with Retry-After (never a 500, never half a
delivery), /healthz says 503; once it is back the server recovers by itself, and
redelivering everything yields exactly the expected ledger, verified intact.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from labledger.storage.engine import make_engine
from tests.integration.servers import LABLEDGER
from tests.reliability.conftest import Budget
from tests.reliability.expected import (
    ExpectedLedger,
    all_or_nothing_differences,
    ledger_counts,
    ledger_differences,
    settle_and_verify,
)
from tests.reliability.launch import ForkLauncher, ServerProcess, health_status, reliability_env
from tests.reliability.pgcluster import PrivateCluster
from tests.reliability.results import record_result
from tests.reliability.traffic import (
    Answer,
    PlannedDelivery,
    create_session,
    plan_deliveries,
    redeliver,
    send_concurrently,
)
from tests.support import SIGNER

pytestmark = pytest.mark.slow

APP_ROLE = "labledger_app"
CLIENTS = 2
PAUSE_S = 0.1
PLANNED_PER_ROUND = 400
PHASE_TIMEOUT_S = 90.0


@dataclass
class Phases:
    """Monotonic times of one outage round, and the /healthz answers seen while it was down."""

    down: float = 0.0
    restarting: float = 0.0
    recovered: float = 0.0
    health_while_down: list[int | None] = field(default_factory=list)


def _migrate(cluster: PrivateCluster, tmp_path: Path) -> None:
    """`labledger migrate --app-role`, as an operator would run it."""
    env = reliability_env(cluster.url(), tmp_path)
    subprocess.run(
        # The servers sign with the test key: the new ledger takes its name as origin.
        [LABLEDGER, "migrate", "--app-role", APP_ROLE, "--origin", SIGNER.name],
        env=env,
        check=True,
        capture_output=True,
        timeout=PHASE_TIMEOUT_S,
    )


def _wait_for(condition: Any, what: str, timeout: float = PHASE_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _outage_round(
    cluster: PrivateCluster, server: ServerProcess, planned: list[PlannedDelivery]
) -> tuple[list[Answer], Phases]:
    """Load the server, stop the cluster mid-load, start it again, load until it recovers."""
    answers: list[Answer] = []
    stop = threading.Event()
    phases = Phases()
    load = threading.Thread(
        target=lambda: send_concurrently(
            server.url,
            planned,
            CLIENTS,
            on_answer=answers.append,
            stop=stop,
            pause_s=PAUSE_S,
            give_up_on_no_answer=False,
        )
    )
    load.start()
    try:
        _wait_for(lambda: sum(a.status == 202 for a in answers) >= 5, "answers before the outage")
        cluster.stop_immediately()
        phases.down = time.monotonic()
        _wait_for(lambda: sum(a.started > phases.down for a in answers) >= 6, "outage answers")
        phases.health_while_down.append(health_status(server.url))
        phases.restarting = time.monotonic()
        cluster.start()
        _wait_for(lambda: health_status(server.url) == 200, "recovery (healthz 200)")
        phases.recovered = time.monotonic()
        _wait_for(
            lambda: sum(a.started > phases.recovered and a.status == 202 for a in answers) >= 3,
            "deliveries recorded after the recovery",
        )
    finally:
        stop.set()
        load.join(PHASE_TIMEOUT_S)
    return answers, phases


def _check_outage_answers(answers: list[Answer], phases: Phases) -> Counter[str]:
    """Only 202 or 503+Retry-After, ever; only 503 while the database was down."""
    assert all(a.status in (202, 503) for a in answers), [
        a for a in answers if a.status not in (202, 503)
    ][:3]
    assert all(a.retry_after for a in answers if a.status == 503)
    during = [a for a in answers if a.started > phases.down and a.finished < phases.restarting]
    assert during and all(a.status == 503 for a in during), during[:3]
    assert phases.health_while_down == [503]
    return Counter(
        {
            "answers during load": len(answers),
            "202 recorded": sum(a.status == 202 for a in answers),
            "503 with Retry-After": sum(a.status == 503 for a in answers),
            "answers while the database was down (all 503)": len(during),
            "503 after healthz was 200 again": sum(
                a.status == 503 and a.started > phases.recovered for a in answers
            ),
        }
    )


def _sent(planned: list[PlannedDelivery], answers: list[Answer]) -> list[PlannedDelivery]:
    ids = {a.delivery_id for a in answers}
    return [d for d in planned if d.delivery_id in ids]


def _check_redelivery(
    engine: Engine, expected: ExpectedLedger, url: str, answers: list[Answer]
) -> Counter[str]:
    acknowledged = {a.delivery_id for a in answers if a.status == 202}
    partial = all_or_nothing_differences(engine, expected, acknowledged)
    assert not partial, partial[:10]
    again = redeliver(url, list(expected.deliveries.values()))
    assert all(
        again[a.delivery_id].attempt_ids == a.attempt_ids for a in answers if a.status == 202
    )
    assert all(a.status in (200, 202) for a in again.values()), list(again.values())[:3]
    differences = ledger_differences(engine, expected)
    assert not differences, differences[:10]
    return Counter({"completed by redelivery": sum(a.status == 202 for a in again.values())})


def test_postgres_outage_answers_503_and_the_server_recovers_by_itself(
    private_pg: PrivateCluster, tmp_path: Path, budget: Budget, fork_launcher: ForkLauncher
) -> None:
    """Stopping PostgreSQL mid-load yields only 503s; after its restart redelivery completes."""
    rng = random.Random(int(os.environ.get("LABLEDGER_TEST_SEED", random.randrange(2**32))))
    _migrate(private_pg, tmp_path)
    engine = make_engine(private_pg.url())
    env = reliability_env(private_pg.url(user=APP_ROLE), tmp_path)
    server = fork_launcher.start(env, tmp_path / "server.log")
    figures: Counter[str] = Counter()
    try:
        expected = ExpectedLedger(sessions={create_session(server.url): "*"})
        pool: list[dict[str, Any]] = []
        for r in range(budget.outage_rounds):
            planned = plan_deliveries(f"outage-{r}", PLANNED_PER_ROUND, rng, pool)
            answers, phases = _outage_round(private_pg, server, planned)
            figures += _check_outage_answers(answers, phases)
            expected.add(_sent(planned, answers))
            figures += _check_redelivery(engine, expected, server.url, answers)
        assert server.alive()
        report = settle_and_verify(engine)
        figures.update(ledger_counts(engine))
    finally:
        server.stop()
        engine.dispose()
    record_result(
        "PostgreSQL outage (pg_ctl stop -m immediate mid-load, then start)",
        "postgresql (private cluster, app role)",
        trials=budget.outage_rounds,
        inputs=len(expected.deliveries),
        held=[
            "only 202 or 503 + Retry-After, never 500; all 503 while down",
            "healthz 503 while down, 200 again without a restart of the server",
            "acknowledged deliveries durable, nothing half-written",
            "redelivery completes: ledger exact, verify intact",
        ],
        figures={**dict(figures), "entries verified": report.entries},
        test="test_outage.py",
    )
