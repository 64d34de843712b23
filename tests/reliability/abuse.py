"""Tools of the abuse scenarios: a webhook probe timing real deliveries while the abuse runs,
and raw-socket clients for what an HTTP library will not send."""

from __future__ import annotations

import json
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx2

from tests.reliability import wire
from tests.reliability.launch import ROOT, ServerProcess
from tests.reliability.traffic import PlannedDelivery, plan_deliveries, post

MIB = 1024 * 1024
PROBE_PAUSE_S = 0.1


@dataclass
class Probe:
    """Signed webhooks sent one after another during the abuse: what GitHub would meet."""

    statuses: list[int | None] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def p99_ms(self) -> float:
        if len(self.seconds) < 2:
            return round(max(self.seconds, default=0.0) * 1000, 1)
        return round(statistics.quantiles(self.seconds, n=100)[98] * 1000, 1)

    def figures(self) -> dict[str, object]:
        return {"webhooks during abuse": len(self.seconds), "webhook p99 (ms)": self.p99_ms()}


@contextmanager
def webhook_probe(server: ServerProcess, tag: str) -> Iterator[Probe]:
    """Sends deliveries until the block ends (at least three); their answers in `Probe`.

    From a process of its own: the abuse's client threads would otherwise hold this
    interpreter's GIL and add their own delays to the latencies measured.
    """
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.abuse", server.url, tag],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    probe = Probe()
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        yield probe
    finally:
        found = json.loads(child.communicate("", timeout=180)[0] or "{}")
        probe.statuses.extend(found.get("statuses", []))
        probe.seconds.extend(found.get("seconds", []))


def _probe_main(url: str, tag: str) -> None:
    """The probe process: send until stdin closes, then print what was answered as JSON."""
    probe, stop = Probe(), threading.Event()
    deliveries = iter(plan_deliveries(tag, 10_000, random.Random(tag), []))
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    with httpx2.Client(timeout=30) as client:
        while not stop.is_set() or len(probe.seconds) < 3:
            answer = post(client, url, next(deliveries))
            probe.statuses.append(answer.status)
            probe.seconds.append(answer.finished - answer.started)
            time.sleep(PROBE_PAUSE_S)
    print(json.dumps({"statuses": probe.statuses, "seconds": probe.seconds}), flush=True)


def in_parallel(count: int, task: Callable[[int], object]) -> list[object]:
    """Run `task(i)` for i < count on as many threads; their results in order."""
    results: list[object] = [None] * count

    def run(i: int) -> None:
        results[i] = task(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    return results


def peak_growth_mib(server: ServerProcess, before: dict[str, int]) -> float:
    return round((server.memory_kib()["VmHWM"] - before["VmHWM"]) / 1024, 1)


def streamed_status(
    url: str, head: bytes, total: int, budget_s: float = 60.0
) -> tuple[int | None, int]:
    """Send `head`, then body bytes until the server answers; (status, bytes sent)."""
    with wire.connect(url) as sock:
        sock.sendall(head)
        piece, sent, deadline = b"x" * (256 * 1024), 0, time.monotonic() + budget_s
        while sent < total and time.monotonic() < deadline and not wire.answered(sock):
            try:
                sock.sendall(piece[: total - sent])
            except (TimeoutError, ConnectionError):
                break
            sent += min(len(piece), total - sent)
        return wire.read_status(sock, wire.SOCKET_TIMEOUT_S), sent


def api_head(path: str, length: int) -> bytes:
    """An unauthenticated JSON POST head declaring `length` bytes."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    return ("\r\n".join([*lines, f"Content-Length: {length}"]) + "\r\n\r\n").encode()


def unsigned_webhook_head(delivery: PlannedDelivery, length: int) -> bytes:
    headers = {k: v for k, v in delivery.headers.items() if k != "x-hub-signature-256"}
    lines = ["POST /webhooks/github HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join([*lines, f"Content-Length: {length}"]) + "\r\n\r\n").encode()


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closed the connection (EOF) within `seconds`."""
    sock.settimeout(seconds)
    try:
        return sock.recv(100) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


if __name__ == "__main__":
    _probe_main(sys.argv[1], sys.argv[2])
