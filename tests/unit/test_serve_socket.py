"""`serve` binds its listening socket itself (a busy port is then one line, not a traceback)."""

from __future__ import annotations

import asyncio
import socket

from labledger.cli.server_verbs import _listen


def test_connections_serve_accepts_answer_without_nagles_delay() -> None:
    """A connection accepted on `serve`'s socket has TCP_NODELAY on, as asyncio sets it on TCP
    sockets it makes itself: with Nagle's algorithm on, every answer written in two parts waits
    for the client's delayed ACK, tens of milliseconds a request."""

    async def accept_one() -> int:
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        listening = _listen("127.0.0.1", 0)
        server = await asyncio.get_running_loop().create_server(Probe, sock=listening)
        port = listening.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            return await asyncio.wait_for(accepted, 10)
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(accept_one()) != 0
