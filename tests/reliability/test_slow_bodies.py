"""Slow and oversized bodies against a real `labledger serve` (fresh interpreter).

A client that trickles its body slower than LABLEDGER_BODY_TIMEOUT_SECONDS gets a 408 and
nothing is written; a chunked body far over LABLEDGER_MAX_BODY_BYTES (no Content-Length) is
refused with 413 without the server's memory growing by anything like the body's size.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from labledger.config import GITHUB_MAX_BODY_BYTES
from tests.reliability import wire
from tests.reliability.conftest import Budget
from tests.reliability.launch import ExecLauncher, ServerProcess, reliability_env
from tests.reliability.results import record_result
from tests.reliability.traffic import AUTH, PlannedDelivery, create_session, plan_deliveries

pytestmark = pytest.mark.slow

BODY_TIMEOUT_S = 1.0
TRICKLE_PAUSE_S = 0.25
TRICKLE_BUDGET_S = 15.0
HUGE_BODY = 200 * 1000 * 1000
CHUNK = 256 * 1024
MIB = 1024 * 1024


@dataclass
class SlowServer:
    server: ServerProcess
    rng: random.Random


@pytest.fixture(scope="module")
def slow_server(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SlowServer]:
    """`labledger serve` with a 1 s body timeout and the default 25 MiB body limit."""
    directory = tmp_path_factory.mktemp("slow-bodies")
    database = directory / "ledger.db"
    database.write_bytes(sqlite_template.read_bytes())
    env = reliability_env(
        f"sqlite:///{database}", directory, LABLEDGER_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT_S)
    )
    server = ExecLauncher().start(env, directory / "server.log")
    try:
        create_session(server.url)
        yield SlowServer(server, random.Random(11))
    finally:
        server.stop()


def _stored(server: ServerProcess, delivery: PlannedDelivery) -> bool:
    response = httpx2.get(
        f"{server.url}/api/v1/deliveries/{delivery.delivery_id}", headers=AUTH, timeout=30
    )
    assert response.status_code in (200, 404), response.text
    return response.status_code == 200


def _trickled_status(server: ServerProcess, delivery: PlannedDelivery, framing: str) -> int | None:
    head = wire.request_head(delivery, str(len(delivery.body)) if framing == "length" else framing)
    with wire.connect(server.url) as sock:
        sock.sendall(head)
        sent = wire.trickle(sock, delivery.body, framing, TRICKLE_PAUSE_S, TRICKLE_BUDGET_S)
        assert sent < len(delivery.body), "the whole body went through before any answer"
        return wire.read_status(sock, wire.SOCKET_TIMEOUT_S)


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_body_trickled_slower_than_the_timeout_gets_408_and_writes_nothing(
    slow_server: SlowServer, framing: str, budget: Budget
) -> None:
    """Headers, then one byte per 0.25 s: refused with 408; the same delivery sent whole is new."""
    statuses = []
    for i in range(budget.slow_body_cases):
        (delivery,) = plan_deliveries(f"slow-{framing}-{i}", 1, slow_server.rng, [])
        status = _trickled_status(slow_server.server, delivery, framing)
        assert status == 408, status
        assert not _stored(slow_server.server, delivery)
        statuses.append(status)
        whole = httpx2.post(
            f"{slow_server.server.url}/webhooks/github",
            content=delivery.body,
            headers=delivery.headers,
            timeout=30,
        )
        assert whole.status_code == 202, whole.text
    record_result(
        f"slow body ({'Content-Length' if framing == 'length' else 'chunked'}), 1 s timeout",
        "sqlite",
        trials=budget.slow_body_cases,
        inputs=budget.slow_body_cases,
        held=["408 before the body is complete", "nothing written; the same delivery later 202"],
        figures={"statuses": sorted(set(statuses)), "trickle": "1 byte / 0.25 s"},
        test="test_slow_bodies.py",
    )


def _too_large_count(server: ServerProcess) -> float:
    text = httpx2.get(f"{server.url}/metrics", timeout=30).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("labledger_deliveries_total{") and 'too_large"' in line
    )


def test_a_huge_chunked_body_is_refused_413_without_being_held(slow_server: SlowServer) -> None:
    """200 MB chunked with no Content-Length: 413, and peak RSS grows by far less than 200 MB."""
    server = slow_server.server
    (delivery,) = plan_deliveries("huge", 1, slow_server.rng, [])
    refusals = _too_large_count(server)
    before = server.memory_kib()
    with wire.connect(server.url) as sock:
        sock.sendall(wire.request_head(delivery, "chunked"))
        sent = wire.stream_chunks(sock, HUGE_BODY, CHUNK, TRICKLE_BUDGET_S * 4)
        status = wire.read_status(sock, wire.SOCKET_TIMEOUT_S)
    after = server.memory_kib()
    assert status == 413, (status, sent)
    assert _too_large_count(server) == refusals + 1
    assert sent < HUGE_BODY, "the server read all 200 MB before refusing"
    growth = (after["VmHWM"] - before["VmHWM"]) * 1024
    # Holding up to the limit before refusing is fine; holding the body is not.
    assert growth < min(HUGE_BODY // 2, 2 * GITHUB_MAX_BODY_BYTES), (
        f"peak RSS +{growth / MIB:.0f} MiB"
    )
    assert not _stored(server, delivery)
    record_result(
        "oversized chunked body (200 MB, no Content-Length) vs 25 MiB limit",
        "sqlite",
        trials=1,
        inputs=1,
        held=["413 before the body ends", "peak RSS growth far below the body size"],
        figures={
            "limit (MiB)": GITHUB_MAX_BODY_BYTES / MIB,
            "sent before the answer (MiB)": round(sent / MIB, 1),
            "peak RSS growth (MiB)": round(growth / MIB, 1),
            "RSS before/after (MiB)": [before["VmRSS"] // 1024, after["VmRSS"] // 1024],
        },
        test="test_slow_bodies.py",
    )
