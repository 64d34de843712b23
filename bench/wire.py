"""A minimal HTTP/1.1 keep-alive client on a raw asyncio Protocol.

A general client (httpx) spends a few hundred microseconds of CPU per request building and
parsing messages; on a 2-core machine that CPU is taken from the server under test. Requests
here are bytes prepared before the clock starts, and a response is cut out of the received
bytes by its Content-Length: one write, one callback per read, one future per request.
"""

from __future__ import annotations

import asyncio

HOST = "127.0.0.1"  # the bench only ever talks to servers it started on this machine
HEAD_END = b"\r\n\r\n"
LENGTH = b"\r\ncontent-length:"


class ProtocolError(Exception):
    """The server answered something this client does not read (no Content-Length)."""


class _Responses(asyncio.Protocol):
    """Collects bytes and completes the pending request's future once a response is whole."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is not None and not self.waiter.done():
            self._complete(self.waiter)

    def _complete(self, waiter: asyncio.Future[tuple[int, bytes]]) -> None:
        end = self.buffer.find(HEAD_END)
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        start = head.find(LENGTH)
        if start < 0:
            waiter.set_exception(ProtocolError(head.split(b"\r\n", 1)[0].decode(errors="replace")))
            return
        stop = head.find(b"\r\n", start + 2)
        total = end + 4 + int(head[start + len(LENGTH) : stop if stop > 0 else None])
        if len(self.buffer) >= total:
            body = bytes(self.buffer[end + 4 : total])
            del self.buffer[:total]
            waiter.set_result((int(head[9:12]), body))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionResetError("server closed the connection"))


class Connection:
    """One keep-alive connection; reopened transparently after the server closes it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._protocol: _Responses | None = None

    async def exchange(self, raw: bytes) -> tuple[int, bytes]:
        """Send one prepared request and return (status, body)."""
        protocol = self._protocol
        if protocol is None or protocol.lost:
            loop = asyncio.get_running_loop()
            _, protocol = await loop.create_connection(_Responses, HOST, self.port)
            self._protocol = protocol
        assert protocol.transport is not None
        protocol.waiter = asyncio.get_running_loop().create_future()
        protocol.transport.write(raw)
        try:
            return await protocol.waiter
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()


async def fetch(port: int, raw: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """One request on a fresh connection (setup and checks, never on a measured path)."""
    connection = Connection(port)
    try:
        async with asyncio.timeout(timeout):
            return await connection.exchange(raw)
    finally:
        await connection.close()
