"""Where `serve` integrates the Merkle log, with real processes.

On PostgreSQL the integrator is a child process of the web worker: it must cover
new entries with checkpoints, come back when it dies, stop with the server, and stop by itself
when the server is killed without a chance to stop it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest

from labledger.config import Settings
from labledger.core.errors import ConfigError
from labledger.storage.verification import verify_database
from tests.conftest import Ledger
from tests.integration.servers import (
    LABLEDGER,
    _wait_healthy,
    free_port,
    server_env,
    write_signing_key,
)
from tests.support import SIGNER, TOKEN, body_of, commit, headers_for, push_payload, session_spec

pytestmark = pytest.mark.slow
SEQUENCER = "labledger.services.integrate"


@contextmanager
def serving(ledger: Ledger, tmp_path: Path, **extra: str) -> Iterator[tuple[str, int]]:
    """One `labledger serve`; yields its URL and process id, and always stops it."""
    port = free_port()
    env = server_env(ledger.url, write_signing_key(tmp_path), **extra)
    with (tmp_path / "server.log").open("wb") as log:
        proc = subprocess.Popen(
            [LABLEDGER, "serve", "--port", str(port), "--no-access-log"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and SEQUENCER.encode() in cmdline and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _eventually(check: Callable[[], object], timeout: float = 20.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {check}")


def _push(url: str, seed: str) -> int:
    body = body_of(push_payload([commit(seed)]))
    answer = httpx2.post(
        f"{url}/webhooks/github", content=body, headers=headers_for(body, delivery_id=seed)
    )
    assert answer.status_code == 202, answer.text
    return int(answer.json()["attempt_ids"][0])


def _proof_status(url: str, attempt: int) -> int:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return httpx2.get(f"{url}/api/v1/attempts/{attempt}/proof", headers=headers).status_code


def _covered(url: str, attempt: int) -> bool:
    return _proof_status(url, attempt) == 200


def test_a_killed_integrator_process_is_started_again(pg_ledger: Ledger, tmp_path: Path) -> None:
    pg_ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    with serving(pg_ledger, tmp_path) as (url, server):
        (first,) = _eventually(lambda: _children(server))  # type: ignore[misc]
        # The signing key reaches the child on its standard input only.
        key = SIGNER.encode().encode()
        seen = (
            Path(f"/proc/{first}/environ").read_bytes()
            + Path(f"/proc/{first}/cmdline").read_bytes()
        )
        assert key not in seen
        attempt = _push(url, "before-kill")
        assert _eventually(lambda: _covered(url, attempt))
        os.kill(first, signal.SIGKILL)
        attempt = _push(url, "after-kill")
        replaced = _eventually(lambda: [p for p in _children(server) if p != first])
        assert _eventually(lambda: _covered(url, attempt))
        assert replaced and not _running(first)
    assert not any(_running(p) for p in replaced)  # type: ignore[union-attr]
    assert "integrator.exited" in (tmp_path / "server.log").read_text()
    report = verify_database(pg_ledger.engine, SIGNER.verifier)
    assert report.ok and report.pending == 0, report.problems


def test_the_integrator_process_stops_when_its_server_is_killed(
    pg_ledger: Ledger, tmp_path: Path
) -> None:
    with serving(pg_ledger, tmp_path) as (_url, server):
        (child,) = _eventually(lambda: _children(server))  # type: ignore[misc]
        os.kill(server, signal.SIGKILL)  # no lifespan shutdown: the child is orphaned
        _eventually(lambda: not _running(child))


def test_each_database_has_one_integrator_and_none_leaves_it_out(
    ledger: Ledger, tmp_path: Path
) -> None:
    """With `none` nobody in `serve` integrates and `labledger integrate` covers the entries;
    by default a child process integrates on PostgreSQL, the web worker on SQLite."""
    dialect = ledger.dialect
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    with serving(ledger, tmp_path, LABLEDGER_INTEGRATOR="none") as (url, server):
        attempt = _push(url, "external")
        time.sleep(1.0)  # five intervals: nobody integrates
        assert _proof_status(url, attempt) == 409 and not _children(server)
        done = subprocess.run(
            [LABLEDGER, "integrate"],
            env=server_env(ledger.url, write_signing_key(tmp_path)),
            capture_output=True,
            check=True,
        )
        assert b"checkpoint" in done.stdout
        assert _covered(url, attempt)
    expected = "process" if dialect == "postgresql" else "thread"
    with serving(ledger, tmp_path) as (url, server):  # auto
        attempt = _push(url, "auto")
        assert _eventually(lambda: _covered(url, attempt))
        assert bool(_children(server)) == (expected == "process")
    report = verify_database(ledger.engine, SIGNER.verifier)
    assert report.ok and report.pending == 0, report.problems


def test_under_load_the_integrator_thread_does_not_wait_for_the_interval(
    sqlite_ledger: Ledger, tmp_path: Path
) -> None:
    """On SQLite the integrator shares the web worker: a round starts once EARLY_ROUND_ENTRIES
    entries of the worker wait, even when the interval is an hour, so no round is large."""
    from labledger.http.integrator import EARLY_ROUND_ENTRIES

    sqlite_ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    hour = {"LABLEDGER_INTEGRATE_INTERVAL_SECONDS": "3600"}
    with serving(sqlite_ledger, tmp_path, **hour) as (url, _server):
        first = _push(url, "one")
        time.sleep(1.0)
        assert _proof_status(url, first) == 409  # a few entries: the hour applies
        for batch in range(EARLY_ROUND_ENTRIES // 20 + 1):
            commits = [commit(f"load-{batch}-{n}") for n in range(20)]
            body = body_of(push_payload(commits))
            headers = headers_for(body, delivery_id=f"load-{batch}")
            answer = httpx2.post(f"{url}/webhooks/github", content=body, headers=headers)
            assert answer.status_code == 202, answer.text
        assert _eventually(lambda: _covered(url, first))
    report = verify_database(sqlite_ledger.engine, SIGNER.verifier)
    assert report.ok, report.problems


@pytest.mark.parametrize("mode", ["cron", "thread", "process"])
def test_an_integrator_mode_other_than_auto_or_none_is_refused(mode: str) -> None:
    """The database decides where the integrator runs; the setting only leaves it out."""
    with pytest.raises(ConfigError, match="LABLEDGER_INTEGRATOR"):
        Settings.from_env({"LABLEDGER_INTEGRATOR": mode})
