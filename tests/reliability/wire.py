"""Raw HTTP/1.1 on a socket, for what an HTTP client library will not do: trickle a body
byte by byte, or stream far more than any limit without ever holding it."""

from __future__ import annotations

import select
import socket
import time
from urllib.parse import urlsplit

from tests.reliability.traffic import PlannedDelivery

SOCKET_TIMEOUT_S = 10.0


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=SOCKET_TIMEOUT_S)


def request_head(delivery: PlannedDelivery, framing: str) -> bytes:
    """The request line and headers; `framing` is a Content-Length value or "chunked"."""
    lines = ["POST /webhooks/github HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in delivery.headers.items()]
    lines.append(
        "Transfer-Encoding: chunked" if framing == "chunked" else f"Content-Length: {framing}"
    )
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def answered(sock: socket.socket) -> bool:
    """Whether the server has written something back (or closed) yet."""
    return bool(select.select([sock], [], [], 0)[0])


def read_status(sock: socket.socket, timeout: float) -> int | None:
    """The status code of the answer, or None if the connection ended without one."""
    sock.settimeout(timeout)
    received = b""
    deadline = time.monotonic() + timeout
    try:
        while b"\r\n" not in received and time.monotonic() < deadline:
            data = sock.recv(4096)
            if not data:
                break
            received += data
    except (TimeoutError, ConnectionError):
        pass
    line = received.split(b"\r\n", 1)[0].split()
    return int(line[1]) if len(line) >= 2 and line[1].isdigit() else None


def trickle(sock: socket.socket, body: bytes, framing: str, pause_s: float, budget_s: float) -> int:
    """Send `body` one byte per `pause_s` until the server answers or `budget_s` passes."""
    deadline = time.monotonic() + budget_s
    sent = 0
    while sent < len(body) and time.monotonic() < deadline and not answered(sock):
        piece = body[sent : sent + 1]
        try:
            sock.sendall(chunk(piece) if framing == "chunked" else piece)
        except ConnectionError:
            break
        sent += 1
        time.sleep(pause_s)
    return sent


def stream_chunks(sock: socket.socket, total: int, size: int, budget_s: float) -> int:
    """Send up to `total` bytes in chunks of `size` until the server answers; returns bytes sent."""
    piece = chunk(b"x" * size)
    deadline = time.monotonic() + budget_s
    sent = 0
    while sent < total and time.monotonic() < deadline and not answered(sock):
        try:
            sock.sendall(piece)
        except (TimeoutError, ConnectionError):
            break
        sent += size
    return sent
