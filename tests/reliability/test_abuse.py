"""Resource exhaustion against a real `labledger serve` (issue 22, items 1-6).

Each scenario is what the audit tried, bounded in count and time, on loopback only; while
it runs, a probe sends signed webhooks one after another and their p99 is reported, with the
server's peak RSS growth. They stream gigabytes and hold hundreds of connections, so they run
in `make reliability` only; `make test` checks each limit with a faster test of its own:
tests/integration/test_abuse_limits.py (bodies before authentication, bytes in flight, metric
labels, pool exhaustion, the webhook lane), test_bounded_reads.py (summaries, long-polls) and
test_slowloris.py (the header timeout).
"""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.conftest import PgDatabases
from tests.reliability import wire
from tests.reliability.abuse import (
    MIB,
    api_head,
    closed_within,
    in_parallel,
    peak_growth_mib,
    streamed_status,
    unsigned_webhook_head,
    webhook_probe,
)
from tests.reliability.launch import ExecLauncher, ServerProcess, reliability_env
from tests.reliability.results import record_result
from tests.reliability.traffic import AUTH, create_session, plan_deliveries
from tests.support import body_of, commit, headers_for, push_payload

pytestmark = [pytest.mark.slow, pytest.mark.reliability]
HEADER_TIMEOUT_S = 2.0


@dataclass
class AbuseServer:
    server: ServerProcess
    database: str


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def abuse_server(
    request: pytest.FixtureRequest,
    sqlite_template: Path,
    pg_databases: PgDatabases | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AbuseServer]:
    """`labledger serve` with its default limits and a 2 s header timeout."""
    directory = tmp_path_factory.mktemp(f"abuse-{request.param}")
    if request.param == "sqlite":
        (directory / "ledger.db").write_bytes(sqlite_template.read_bytes())
        url = f"sqlite:///{directory / 'ledger.db'}"
    elif pg_databases is None:
        pytest.skip("LABLEDGER_TEST_PG_URL is not set")
    else:
        url = pg_databases.create()
    env = reliability_env(url, directory, LABLEDGER_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT_S))
    server = ExecLauncher().start(env, directory / "server.log")
    try:
        yield AbuseServer(server, request.param)
    finally:
        server.stop()


def _record(scenario: str, abuse: AbuseServer, held: list[str], **figures: object) -> None:
    record_result(
        scenario, abuse.database, trials=1, inputs=1, held=held, figures=figures,
        test="test_abuse.py",
    )  # fmt: skip


def test_unauthenticated_300_mib_api_body_is_refused_unread(abuse_server: AbuseServer) -> None:
    """No token, 300 MiB declared or chunked: 413 at once; memory does not follow the body."""
    server = abuse_server.server
    before = server.memory_kib()
    with webhook_probe(server, f"huge-{abuse_server.database}") as probe:
        declared = streamed_status(server.url, api_head("/api/v1/sessions", 300 * MIB), 300 * MIB)
        with wire.connect(server.url) as sock:
            head = api_head("/api/v1/sessions", 0).replace(
                b"Content-Length: 0", b"Transfer-Encoding: chunked"
            )
            sock.sendall(head)
            chunked_sent = wire.stream_chunks(sock, 300 * MIB, 256 * 1024, 60)
            chunked = wire.read_status(sock, wire.SOCKET_TIMEOUT_S)
    growth = peak_growth_mib(server, before)
    assert (declared[0], chunked) == (413, 413)
    assert growth < 50 and set(probe.statuses) == {202}
    _record(
        "no token, 300 MiB body to POST /api/v1/sessions (declared, then chunked)",
        abuse_server,
        ["413 before the body is read", "peak RSS does not follow the body"],
        **{
            "sent before 413, declared/chunked (MiB)": [
                round(declared[1] / MIB, 1),
                round(chunked_sent / MIB, 1),
            ],
            "peak RSS growth (MiB)": growth,
            **probe.figures(),
        },
    )


def _random_method(rng: random.Random) -> bytes:
    method = "".join(rng.choices(string.ascii_uppercase, k=8000))
    return f"{method} /api/v1/sessions/{rng.randint(1, 10**9)} HTTP/1.1\r\nHost: x\r\n\r\n".encode()


def test_random_http_methods_do_not_grow_metrics(abuse_server: AbuseServer) -> None:
    """200 requests with random 8,000-letter methods leave /metrics about as it was."""
    server, rng = abuse_server.server, random.Random(2)
    size_before = len(httpx2.get(f"{server.url}/metrics", timeout=30).content)
    statuses = []
    for _ in range(200):
        with wire.connect(server.url) as sock:
            sock.sendall(_random_method(rng))
            statuses.append(wire.read_status(sock, wire.SOCKET_TIMEOUT_S))
    size_after = len(httpx2.get(f"{server.url}/metrics", timeout=30).content)
    assert size_after - size_before < 20_000, (size_before, size_after)
    _record(
        "200 requests with random 8,000-letter HTTP methods",
        abuse_server,
        ["methods outside the allow-list are labelled `other`", "/metrics stays small"],
        **{
            "statuses": sorted({s for s in statuses if s is not None}),
            "/metrics bytes before/after": [size_before, size_after],
        },
    )


def test_forty_unsigned_24_mib_webhooks_are_capped(abuse_server: AbuseServer) -> None:
    """Forty concurrent unsigned 24 MiB bodies: a few are read (401), the rest 503 unread."""
    server = abuse_server.server
    (delivery,) = plan_deliveries(f"unsigned-{abuse_server.database}", 1, random.Random(3), [])
    head = unsigned_webhook_head(delivery, 24 * MIB)
    before = server.memory_kib()
    with webhook_probe(server, f"cap-{abuse_server.database}") as probe:
        answers = in_parallel(40, lambda _: streamed_status(server.url, head, 24 * MIB))
    growth = peak_growth_mib(server, before)
    statuses = [a[0] for a in answers]  # type: ignore[index]
    assert set(statuses) <= {401, 503} and statuses.count(503) >= 30, statuses
    assert growth < 300 and set(probe.statuses) <= {202, 503}
    _record(
        "40 concurrent unsigned 24 MiB webhook bodies",
        abuse_server,
        ["bytes in flight capped: 503 + Retry-After unread past it", "every read body 401"],
        **{
            "401 / 503": [statuses.count(401), statuses.count(503)],
            "peak RSS growth (MiB)": growth,
            "probe answers 202 / 503": [probe.statuses.count(202), probe.statuses.count(503)],
            **probe.figures(),
        },
    )


def _seed_attempts(url: str, repository_id: int, pushes: int) -> int:
    session = create_session(url, repository_id=repository_id, subject_id=f"s-{repository_id}")
    for p in range(pushes):
        commits = [commit(("seed", repository_id, p, i)) for i in range(2048)]
        body = body_of(push_payload(commits, repository_id=repository_id))
        answer = httpx2.post(
            f"{url}/webhooks/github", content=body, headers=headers_for(body), timeout=120
        )
        assert answer.status_code == 202, answer.text
    return session


def test_summary_flood_cannot_starve_webhooks(abuse_server: AbuseServer) -> None:
    """42 clients reading a 4,096-attempt summary in a loop: webhooks still 202, never a 500."""
    server = abuse_server.server
    repository = 7000 + len(abuse_server.database)
    session = _seed_attempts(server.url, repository, 2)
    path = f"{server.url}/api/v1/sessions/{session}/summary"

    def read(_: int) -> list[int]:
        with httpx2.Client(timeout=60, headers=AUTH) as client:
            return [client.get(path).status_code for _ in range(15)]

    with webhook_probe(server, f"flood-{abuse_server.database}") as probe:
        reads = [s for got in in_parallel(42, read) for s in got]  # type: ignore[attr-defined]
        health = httpx2.get(f"{server.url}/healthz", timeout=30).status_code
    assert set(reads) <= {200, 503} and health == 200, set(reads)
    assert set(probe.statuses) == {202}
    _record(
        "42 concurrent clients reading a 4,096-attempt session summary, 15 reads each",
        abuse_server,
        ["webhooks answered 202 throughout", "reads 200 or 503 + Retry-After, never 500"],
        **{"reads 200 / 503": [reads.count(200), reads.count(503)], **probe.figures()},
    )


def test_three_hundred_long_polls_share_one_check(abuse_server: AbuseServer) -> None:
    """300 clients long-polling the feed for 15 s: at most the cap wait, webhooks unaffected."""
    server = abuse_server.server
    request = (
        "GET /api/v1/feed?after=999999999&wait=15 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {AUTH['Authorization']}\r\n\r\n"
    ).encode()

    def polls() -> list[int | None]:
        # Raw sockets, all opened before any answer: an HTTP client per thread would start
        # them seconds apart on this interpreter and never reach the cap.
        socks = [wire.connect(server.url) for _ in range(300)]
        try:
            for sock in socks:
                sock.sendall(request)
            return [wire.read_status(sock, 40) for sock in socks]
        finally:
            for sock in socks:
                sock.close()

    with webhook_probe(server, f"poll-{abuse_server.database}") as probe:
        statuses = polls()
    assert set(statuses) <= {200, 503} and 0 < statuses.count(503) <= 200, statuses
    assert set(probe.statuses) == {202}
    _record(
        "300 concurrent long-polls on /api/v1/feed?wait=15 (cap: 100 waiters)",
        abuse_server,
        ["one shared database check per interval", "waiters past the cap: 503 + Retry-After"],
        **{"200 / 503": [statuses.count(200), statuses.count(503)], **probe.figures()},
    )


def test_two_hundred_slowloris_connections_are_closed(abuse_server: AbuseServer) -> None:
    """200 connections that never finish their headers are closed by the server."""
    server = abuse_server.server
    with webhook_probe(server, f"slowloris-{abuse_server.database}") as probe:
        held = [wire.connect(server.url) for _ in range(200)]
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        closed = sum(closed_within(sock, HEADER_TIMEOUT_S + 5) for sock in held)
        for sock in held:
            sock.close()
    assert closed == 200 and set(probe.statuses) == {202}
    _record(
        f"200 slowloris connections (headers never finished), {HEADER_TIMEOUT_S:g} s timeout",
        abuse_server,
        ["every connection closed by the server", "webhooks answered 202 throughout"],
        **{"closed": f"{closed} of 200", **probe.figures()},
    )
