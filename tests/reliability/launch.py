"""Start, kill -9, restart and stop real `labledger serve` processes, and always clean up.

Two launchers with one interface: `ExecLauncher` runs the installed `labledger` command in a
fresh interpreter; `ForkLauncher` forks the same command from a pre-imported parent (see
forkserver.py), which makes the hundreds of restarts of the crash trials affordable.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx2

from tests.integration.servers import LABLEDGER, free_port, server_env, write_signing_key

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0


@dataclass
class ServerProcess:
    """One running server: its pid, base URL and the file its stdout/stderr go to."""

    pid: int
    url: str
    log: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return _state(self.pid) not in ("Z", "X", None)

    def kill9(self) -> None:
        """SIGKILL, as a crash or the OOM killer would; returns once the process is gone."""
        self._signal(signal.SIGKILL)
        self._wait_gone(STOP_TIMEOUT_S)

    def stop(self) -> None:
        """SIGTERM (graceful: the last integration round runs), SIGKILL if it hangs."""
        if not self.alive():
            return
        self._signal(signal.SIGTERM)
        if not self._wait_gone(STOP_TIMEOUT_S):
            self.kill9()

    def memory_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak RSS) from /proc, in KiB."""
        found = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
        return found

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def _wait_gone(self, timeout: float) -> bool:
        if self.popen is not None:
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        return not self.alive()


def _state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


class Launcher(Protocol):
    def start(self, env: dict[str, str], log: Path, port: int | None = None) -> ServerProcess: ...


def reliability_env(database_url: str, directory: Path, **extra: str) -> dict[str, str]:
    """The server environment of tests/integration/servers.py, at INFO unless told otherwise."""
    env = server_env(database_url, write_signing_key(directory), LABLEDGER_LOG_LEVEL="INFO")
    env.update(extra)
    return with_bytecode_cache(env)


def with_bytecode_cache(env: dict[str, str]) -> dict[str, str]:
    """Bytecode caching is off in some shells; a cache outside the tree keeps startups short."""
    env = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "labledger-test-pycache")
    return env


def _serve_argv(port: int, access_log: bool) -> list[str]:
    flag = "--access-log" if access_log else "--no-access-log"
    return ["serve", "--host", "127.0.0.1", "--port", str(port), flag]


class ExecLauncher:
    """`labledger serve` as the installed console script, in a fresh interpreter."""

    def __init__(self, access_log: bool = False) -> None:
        self.access_log = access_log

    def start(self, env: dict[str, str], log: Path, port: int | None = None) -> ServerProcess:
        port = port or free_port()
        with log.open("ab") as sink:
            popen = subprocess.Popen(
                [LABLEDGER, *_serve_argv(port, self.access_log)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        server = ServerProcess(popen.pid, f"http://127.0.0.1:{port}", log, popen)
        return wait_healthy(server)


class ForkLauncher:
    """`labledger serve` forked from forkserver.py; call `close()` when done."""

    def __init__(self) -> None:
        env = with_bytecode_cache({k: v for k, v in os.environ.items() if "LABLEDGER_" not in k})
        self._parent = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.forkserver"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def start(self, env: dict[str, str], log: Path, port: int | None = None) -> ServerProcess:
        port = port or free_port()
        request = {"argv": _serve_argv(port, False), "env": env, "log": str(log)}
        assert self._parent.stdin is not None and self._parent.stdout is not None
        self._parent.stdin.write(json.dumps(request) + "\n")
        self._parent.stdin.flush()
        pid = int(self._parent.stdout.readline())
        return wait_healthy(ServerProcess(pid, f"http://127.0.0.1:{port}", log))

    def close(self) -> None:
        """End the parent (EOF on its stdin); its remaining children die with it."""
        try:
            self._parent.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self._parent.kill()
            self._parent.communicate()


def wait_healthy(server: ServerProcess, timeout: float = START_TIMEOUT_S) -> ServerProcess:
    """Wait for /healthz to answer 200; kill the process and raise if it never does."""
    deadline = time.monotonic() + timeout
    with httpx2.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if not server.alive():
                raise RuntimeError(f"server {server.url} exited early; log:\n{_tail(server.log)}")
            if health_status(server.url, client) == 200:
                return server
            time.sleep(0.02)
    server.kill9()
    raise RuntimeError(f"server {server.url} not healthy within {timeout} s:\n{_tail(server.log)}")


def health_status(url: str, client: httpx2.Client | None = None) -> int | None:
    """The status of GET /healthz, or None when nothing answers."""
    try:
        if client is None:
            return httpx2.get(f"{url}/healthz", timeout=5.0).status_code
        return client.get(f"{url}/healthz").status_code
    except httpx2.TransportError:
        return None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
