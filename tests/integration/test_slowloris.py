"""Connections that never finish their request headers are closed (issue 22, slowloris)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from labledger.http.header_timeout import HeaderTimeoutH11Protocol


async def _hello(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture
def server_port() -> Iterator[int]:
    """A uvicorn server on the protocol `serve` uses, with a half-second header timeout."""
    HeaderTimeoutH11Protocol.configure(0.5)
    config = uvicorn.Config(
        _hello, host="127.0.0.1", port=0, http=HeaderTimeoutH11Protocol, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        threading.Event().wait(0.05)
    yield server.servers[0].sockets[0].getsockname()[1]
    server.should_exit = True
    thread.join(10)
    HeaderTimeoutH11Protocol.configure(10.0)


def _connect(port: int) -> socket.socket:
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn.settimeout(10)
    return conn


def test_slowloris_connections_are_closed(server_port: int) -> None:
    """Headers trickled in and never finished: the server closes the connection itself."""
    held = [_connect(server_port) for _ in range(20)]
    for conn in held:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: ")
    for conn in held:
        conn.sendall(b"a")
    closed = [conn.recv(100) == b"" for conn in held]
    for conn in held:
        conn.close()
    assert all(closed)


def test_complete_requests_are_still_answered_on_kept_alive_connections(server_port: int) -> None:
    """A request with whole headers is answered, and so is a second one on the connection."""
    with _connect(server_port) as conn:
        for _ in range(2):
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"hello"):
                answer += conn.recv(1000)
            assert answer.startswith(b"HTTP/1.1 200")
