"""Server processes under test: started on a free loopback port, always stopped again."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.wire import HOST
from labledger.config import Settings

ROOT = Path(__file__).resolve().parent.parent
LABLEDGER = Path(sys.executable).with_name("labledger")  # the console script, in this venv
SECRET = "bench-webhook-secret"
TOKEN = "bench-api-token-0123456789abcdef0123456"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


class ServerFailed(RuntimeError):
    """A server did not come up; the message carries the end of its log."""


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    port: int
    pid: int


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def server_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment without LABLEDGER_*/BENCH_* settings, plus `extra`.

    labledger refuses unknown LABLEDGER_* names, and LABLEDGER_TEST_PG_URL is one of them.
    """
    kept = {k: v for k, v in os.environ.items() if not k.startswith(("LABLEDGER_", "BENCH_"))}
    return {**kept, "LABLEDGER_GITHUB_WEBHOOK_SECRET": SECRET, **extra}


def labledger_env(database_url: str, scratch: Path) -> dict[str, str]:
    """The environment `labledger serve` needs for one database, signing key included."""
    env = server_env({"LABLEDGER_DATABASE_URL": database_url, "LABLEDGER_API_TOKENS": TOKEN})
    if "signing_key_file" in Settings.model_fields:  # checkpoints are signed: serve needs a key
        key = scratch / f"signing-{uuid.uuid4().hex[:8]}.key"
        env["LABLEDGER_SIGNING_KEY_FILE"] = str(key)
        command = [str(LABLEDGER), "keys", "init"]  # named after the ledger's origin
        subprocess.run(command, env=env, check=True, capture_output=True, timeout=60)
    return env


def labledger_command(port: int) -> list[str]:
    return [
        str(LABLEDGER), "serve", "--host", HOST, "--port", str(port), "--workers", "1",
        "--no-access-log",
    ]  # fmt: skip


def uvicorn_command(factory: str, port: int, log_level: str = "warning") -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", factory, "--factory", "--host", HOST,
        "--port", str(port), "--no-access-log", "--log-level", log_level,
    ]  # fmt: skip


@contextmanager
def running(
    name: str, command_for: Callable[[int], list[str]], env: Mapping[str, str], logs: Path
) -> Iterator[Server]:
    """Start `command_for(port)`, wait for GET /healthz to answer 200, stop it on exit."""
    port = free_port()
    command = command_for(port)
    log_path = logs / f"{name}-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_ready(process, port, log_path)
        yield Server(name, port, process.pid)
    finally:
        _stop(process)


def _wait_ready(process: subprocess.Popen[bytes], port: int, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerFailed(f"exited with {process.returncode}: {_tail(log_path)}")
        if _healthy(port):
            return
        time.sleep(0.1)
    raise ServerFailed(f"not ready after {READY_TIMEOUT_S:g} s: {_tail(log_path)}")


def _healthy(port: int) -> bool:
    connection = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)


def _tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])
