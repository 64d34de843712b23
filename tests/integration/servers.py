"""Start real `labledger serve` processes for tests, and always stop them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
from starlette.types import ASGIApp

from tests.support import SECRET, SIGNER, TOKEN

LABLEDGER = str(Path(sys.executable).with_name("labledger"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_signing_key(directory: Path) -> Path:
    path = directory / "signing.key"
    if not path.exists():
        path.write_text(SIGNER.encode() + "\n", encoding="utf-8")
    return path


def server_env(database_url: str, key_file: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABLEDGER_")}
    env.update(
        LABLEDGER_DATABASE_URL=database_url,
        LABLEDGER_GITHUB_WEBHOOK_SECRET=SECRET,
        LABLEDGER_API_TOKENS=TOKEN,
        LABLEDGER_LOG_LEVEL="WARNING",
        LABLEDGER_SIGNING_KEY_FILE=str(key_file),
        LABLEDGER_INTEGRATE_INTERVAL_SECONDS="0.2",
    )
    env.update(extra)
    return env


@contextmanager
def running_servers(
    database_url: str, count: int, log_dir: Path, **extra: str
) -> Iterator[list[str]]:
    """`count` server processes on one database; yields their base URLs. `extra`: settings."""
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for i in range(count):
            port = free_port()
            with (log_dir / f"server-{i}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [LABLEDGER, "serve", "--port", str(port), "--no-access-log"],
                        env=server_env(database_url, write_signing_key(log_dir), **extra),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            urls.append(f"http://127.0.0.1:{port}")
        for url, proc in zip(urls, procs, strict=True):
            _wait_healthy(url, proc)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server {url} exited with {proc.returncode}")
        try:
            if httpx2.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server {url} not healthy within {timeout} s")


@contextmanager
def serving_in_thread(app: ASGIApp) -> Iterator[int]:
    """`app` behind uvicorn on the protocol `serve` uses, in this process; yields its port.
    For what only a real HTTP server shows (chunked bodies, refusals midway) without the
    start-up of a `labledger serve` process."""
    import uvicorn

    from labledger.http.header_timeout import HeaderTimeoutH11Protocol

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, http=HeaderTimeoutH11Protocol, log_config=None
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the in-process server did not start")
            time.sleep(0.02)
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        thread.join(10)
