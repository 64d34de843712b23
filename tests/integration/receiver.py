"""A real HTTP receiver for outbound notifications: a threaded http.server on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class Receiver:
    url: str
    secret: str = SECRET
    status: int = 200
    delay: float = 0.0
    location: str | None = None  # sent with a 3xx status
    received: list[tuple[str, dict[str, object]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ids(self) -> list[str]:
        with self.lock:
            return [event_id for event_id, _ in self.received]

    def payloads(self) -> list[dict[str, object]]:
        with self.lock:
            return [payload for _, payload in self.received]


@contextmanager
def running_receiver(status: int = 200, delay: float = 0.0) -> Iterator[Receiver]:
    """Verifies each request's Standard Webhooks signature (a bad one answers 401, unrecorded)."""
    receiver = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            time.sleep(receiver.delay)
            try:
                payload = Webhook(receiver.secret).verify(body, dict(self.headers.items()))
            except Exception:
                self.send_response(401)
                self.end_headers()
                return
            if receiver.status < 300:
                with receiver.lock:
                    receiver.received.append((self.headers["webhook-id"], payload))
            self.send_response(receiver.status)
            if receiver.location is not None:
                self.send_header("Location", receiver.location)
            self.end_headers()

        def do_GET(self) -> None:
            # What a web server at a redirect's Location answers to the GET a client that
            # follows redirects turns the POST into: a 200 that no event was delivered by.
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    receiver.status, receiver.delay = status, delay
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
