"""What an attacker without a token or signature can make the server hold: bodies, bytes in
flight, metric labels, connections and threads (issue 22, resource exhaustion)."""

from __future__ import annotations

import contextlib
import json
import random
import socket
import string
import threading
import time
from collections.abc import Iterator

import anyio
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp, Message
from structlog.testing import capture_logs

from labledger.config import Settings
from labledger.http.app import create_app
from labledger.http.limits import BodyLimits, ByteBudget
from labledger.storage.engine import make_engine
from labledger.storage.sql_store import SqlStore
from tests.conftest import Ledger
from tests.integration.servers import serving_in_thread
from tests.support import SECRET, SIGNER, TOKEN, body_of, commit, headers_for, push_payload

MiB = 1024 * 1024
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def _settings(**overrides: object) -> Settings:
    return Settings.model_validate(
        {"github_webhook_secret": SECRET, "api_tokens": TOKEN, **overrides}
    )


class Sender:
    """Feeds a request body to an ASGI app chunk by chunk, counting what the app pulled."""

    def __init__(self, chunks: int, size: int, gate: anyio.Event | None = None) -> None:
        self.left = chunks
        self.size = size
        self.pulled = 0
        self.gate = gate

    async def receive(self) -> Message:
        if self.gate is not None and self.pulled >= self.size:
            await self.gate.wait()
        self.left -= 1
        self.pulled += self.size
        return {"type": "http.request", "body": b"x" * self.size, "more_body": self.left > 0}


async def _call(
    app: ASGIApp, path: str, sender: Sender, headers: dict[str, str]
) -> tuple[int, dict[str, str]]:
    """One POST through the ASGI interface, as a server would make it; (status, headers)."""
    answer: dict[str, object] = {}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}

    await app(scope, sender.receive, send)
    return int(answer["status"]), answer["headers"]  # type: ignore[call-overload,return-value]


def test_unauthenticated_huge_body_is_refused_before_reading(ledger: Ledger) -> None:
    """A 300 MiB body with no token is refused 413 unread; a chunked one once past the limit."""
    app = create_app(_settings(max_api_body_bytes=MiB), ledger.store, SIGNER)
    declared = Sender(300, MiB)
    status, _ = anyio.run(
        _call, app, "/api/v1/sessions", declared, {"content-length": str(300 * MiB)}
    )
    assert (status, declared.pulled) == (413, 0)
    chunked = Sender(300, 64 * 1024)
    status, _ = anyio.run(_call, app, "/api/v1/sessions", chunked, {"transfer-encoding": "chunked"})
    assert status == 413
    assert chunked.pulled <= MiB + 64 * 1024


def test_concurrent_unsigned_webhook_bodies_are_capped(ledger: Ledger) -> None:
    """Past the webhook bytes in flight, further bodies get 503 + Retry-After, unread."""
    settings = _settings(max_body_bytes=MiB, webhook_bytes_in_flight=MiB)
    app = create_app(settings, ledger.store, SIGNER)
    gate = anyio.Event()
    held, late, streamed = (
        Sender(2, MiB // 2 - 1, gate),
        Sender(2, MiB // 2 - 1),
        Sender(4, MiB // 4),
    )
    declared = {"content-length": str(MiB - 2), "content-type": "application/json"}
    chunked = {"transfer-encoding": "chunked", "content-type": "application/json"}
    answers: dict[str, tuple[int, dict[str, str]]] = {}

    async def post(name: str, sender: Sender, headers: dict[str, str]) -> None:
        answers[name] = await _call(app, "/webhooks/github", sender, headers)

    async def scenario() -> None:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(post, "held", held, declared)
                await anyio.wait_all_tasks_blocked()
                await post("late", late, declared)
                await post("streamed", streamed, chunked)
                gate.set()
            await post("again", Sender(2, MiB // 2 - 1), declared)

    anyio.run(scenario)
    assert (answers["late"][0], late.pulled) == (503, 0)
    assert answers["late"][1]["retry-after"].isdigit()
    assert answers["streamed"][0] == 503 and streamed.pulled < MiB
    assert answers["streamed"][1]["retry-after"].isdigit()
    assert (answers["held"][0], answers["again"][0]) == (401, 401)


def test_lone_chunked_webhook_over_the_size_limit_is_too_large_not_busy(ledger: Ledger) -> None:
    """One chunked body past LABLEDGER_MAX_BODY_BYTES, nothing else in flight: 413, since
    delivering it again later would not help; it never holds more than the size limit."""
    settings = _settings(max_body_bytes=MiB, webhook_bytes_in_flight=MiB)
    app = create_app(settings, ledger.store, SIGNER)
    chunked = {"transfer-encoding": "chunked", "content-type": "application/json"}
    streamed = Sender(8, MiB // 4)
    status, _ = anyio.run(_call, app, "/webhooks/github", streamed, chunked)
    assert status == 413 and streamed.pulled <= MiB + MiB // 4


def _in_flight(app: ASGIApp) -> ByteBudget:
    """The running app's webhook byte budget (its middleware stack is built on first use)."""
    layer = getattr(app, "middleware_stack", None)
    while not isinstance(layer, BodyLimits):
        layer = getattr(layer, "app", None)
        assert layer is not None, "no BodyLimits in the middleware stack"
    return layer.in_flight


def _webhook_head(framing: str) -> bytes:
    lines = [
        "POST /webhooks/github HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        "X-GitHub-Event: push",
        "X-GitHub-Delivery: 0f6c4e2a-22aa-4bbb-8ccc-000000000022",
        "Transfer-Encoding: chunked" if framing == "chunked" else f"Content-Length: {framing}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_answer(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer with a Content-Length: (status, headers, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, f"connection closed before an answer: {data!r}"
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines)}
    while len(body) < int(headers["content-length"]):
        piece = sock.recv(65536)
        assert piece, "connection closed inside the answer"
        body += piece
    return int(status_line.split()[1]), headers, body


def _wait_until_held(app: ASGIApp, size: int) -> None:
    for _ in range(1000):
        if getattr(app, "middleware_stack", None) and _in_flight(app).held:
            break
        time.sleep(0.01)
    assert _in_flight(app).held == size


def _stream_chunks(sock: socket.socket, total: int, size: int) -> None:
    """Send `total` bytes as chunks of `size`, stopping quietly if the server hangs up."""
    piece = b"x" * size
    try:
        for _ in range(total // size):
            sock.sendall(f"{size:x}\r\n".encode() + piece + b"\r\n")
    except OSError:
        pass  # refused midway: the server closed the connection


def test_chunked_webhook_refused_midway_by_bytes_in_flight_answers_busy(ledger: Ledger) -> None:
    """A chunked body that reaches the bytes-in-flight cap while streaming gets 503 `busy`."""
    settings = _settings(max_body_bytes=MiB, webhook_bytes_in_flight=MiB)
    app = create_app(settings, ledger.store, SIGNER)
    with (
        serving_in_thread(app) as port,
        socket.create_connection(("127.0.0.1", port), timeout=20) as held,
        socket.create_connection(("127.0.0.1", port), timeout=20) as streamed,
    ):
        held.sendall(_webhook_head(str(MiB // 2)) + b"{")
        _wait_until_held(app, MiB // 2)
        streamed.sendall(_webhook_head("chunked"))
        # The whole body would stay under LABLEDGER_MAX_BODY_BYTES: only the cap refuses it.
        sender = threading.Thread(
            target=_stream_chunks, args=(streamed, MiB - 64 * 1024, 64 * 1024)
        )
        sender.start()
        status, headers, body = _read_answer(streamed)
        sender.join(20)
    assert (status, json.loads(body)["error"]) == (503, "busy"), body
    assert headers["retry-after"].isdigit()


class GoneMidway(Sender):
    """Sends one chunk of a longer body, then the client is gone."""

    async def receive(self) -> Message:
        if self.pulled:
            return {"type": "http.disconnect"}
        self.pulled += self.size
        return {"type": "http.request", "body": b"{" * self.size, "more_body": True}


@pytest.mark.parametrize("path", ["/webhooks/github", "/webhooks/gitlab"])
def test_client_gone_midway_through_a_webhook_body_is_no_server_error(
    ledger: Ledger, path: str
) -> None:
    """A sender that gives up inside its body (GitHub does at 10 s) costs a log line, not an
    unhandled exception with its traceback."""
    app = create_app(_settings(), ledger.store, SIGNER)
    headers = {"content-length": "4096", "content-type": "application/json", **ADMIN}
    with capture_logs() as logs:
        anyio.run(_call_unanswered, app, path, GoneMidway(1, 1024), headers)
    assert [e["event"] for e in logs if e["log_level"] in ("error", "critical")] == []
    assert "http.client_gone" in [e["event"] for e in logs]


async def _call_unanswered(
    app: ASGIApp, path: str, sender: Sender, headers: dict[str, str]
) -> None:
    """`_call` for a request whose client is gone: no status is expected back."""
    with contextlib.suppress(KeyError):
        await _call(app, path, sender, headers)


def test_random_http_methods_do_not_grow_metrics(ledger: Ledger) -> None:
    """Random methods and raw paths leave only allow-listed methods and route templates."""
    app = create_app(_settings(), ledger.store, SIGNER)
    rng = random.Random(22)
    with TestClient(app) as client:
        for _ in range(40):
            method = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 2000)))
            path = rng.choice(["/api/v1/sessions/", "/nowhere/", "/api/v1/attempts/"])
            client.request(method, f"{path}{rng.randint(1, 10**9)}", headers=ADMIN)
        client.get(f"/api/v1/sessions/{rng.randint(1, 10**9)}", headers=ADMIN)
        text = client.get("/metrics").text
    labels = {
        (s.labels["method"], s.labels["route"])
        for family in text_string_to_metric_families(text)
        if family.name == "labledger_request_duration_seconds"
        for s in family.samples
    }
    assert {m for m, _ in labels} <= {"GET", "other"}
    assert {r for _, r in labels} <= {
        "/api/v1/sessions/{session_id}",
        "/api/v1/attempts/{attempt_id}",
        "unmatched",
    }
    assert ("other", "/api/v1/sessions/{session_id}") in labels


def test_pool_exhaustion_answers_503(ledger: Ledger) -> None:
    """With every pooled connection taken, a read answers 503 + Retry-After, never 500."""
    engine = make_engine(ledger.url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    app = create_app(_settings(), SqlStore(engine), SIGNER)
    with TestClient(app, raise_server_exceptions=False) as client, engine.connect():
        answer = client.get("/api/v1/sessions", headers=ADMIN)
    engine.dispose()
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "unavailable"
    assert answer.headers["retry-after"].isdigit()


class StalledReads:
    """Every session read holds a pooled connection and a worker thread until released."""

    def __init__(self, store: SqlStore) -> None:
        self.release = threading.Event()
        self.entered: list[int] = []
        self.original = store.get_session
        self.engine = store.engine

    def read(self, session_id: int) -> object:
        self.entered.append(session_id)
        with self.engine.connect():
            self.release.wait(30)
        return self.original(session_id)


@pytest.fixture
def stalled_reads(ledger: Ledger) -> Iterator[StalledReads]:
    stalled = StalledReads(ledger.store)
    ledger.store.get_session = stalled.read  # type: ignore[method-assign]
    yield stalled
    stalled.release.set()


def test_read_traffic_cannot_starve_webhooks(ledger: Ledger, stalled_reads: StalledReads) -> None:
    """Forty stalled reads hold their lane; a webhook still gets a thread and a connection."""
    app = create_app(_settings(), ledger.store, SIGNER)
    refused: list[int] = []

    def read(client: TestClient) -> None:
        status = client.get("/api/v1/sessions/1", headers=ADMIN).status_code
        if not stalled_reads.release.is_set():
            refused.append(status)

    with TestClient(app, raise_server_exceptions=False) as client:
        readers = [threading.Thread(target=read, args=(client,)) for _ in range(40)]
        for reader in readers:
            reader.start()
        for _ in range(400):  # every read is stalled or already refused
            if len(stalled_reads.entered) + len(refused) >= 40:
                break
            time.sleep(0.05)
        body = body_of(push_payload([commit()]))
        answers: list[int] = []
        webhook = threading.Thread(
            target=lambda: answers.append(
                client.post("/webhooks/github", content=body, headers=headers_for(body)).status_code
            )
        )
        webhook.start()
        webhook.join(20)
        answered_while_reads_stalled = not stalled_reads.release.is_set() and answers == [202]
        stalled_reads.release.set()
        for reader in readers:
            reader.join(30)
    assert answered_while_reads_stalled, answers
    assert set(refused) <= {503}
