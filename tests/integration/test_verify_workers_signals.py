"""Verify's worker processes can be stopped, whatever SIGTERM handler their parent set.

`ChunkWorkers.close` stops its workers with SIGTERM. A forked worker keeps its parent's
handlers: one that only sets a flag (uvicorn's) or raises (a tool's, inside the pool's queue
lock) left `close` joining a worker for ever, and `verify` with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import Ledger

_SCRIPT = textwrap.dedent(
    """
    import json, multiprocessing, signal, sys, time
    from labledger.storage.engine import make_engine
    from labledger.storage.verify_workers import ChunkWorkers

    def masks(pid):
        fields = dict(line.split(":\\t") for line in open(f"/proc/{pid}/status"))
        return int(fields["SigCgt"], 16), int(fields["SigIgn"], 16)

    def flag(signum, frame):
        pass

    signal.signal(signal.SIGTERM, flag)
    workers = ChunkWorkers(make_engine(sys.argv[1]), 2)
    pids = [p.pid for p in multiprocessing.active_children()]
    deadline = time.monotonic() + 20  # the initializer runs just after each fork
    while time.monotonic() < deadline:
        found = {pid: masks(pid) for pid in pids}
        if all(ignored >> (signal.SIGINT - 1) & 1 for _, ignored in found.values()):
            break
        time.sleep(0.05)
    workers.close()
    print(json.dumps({
        "workers": len(pids),
        "sigterm_caught": [bool(c >> (signal.SIGTERM - 1) & 1) for c, _ in found.values()],
        "sigint_ignored": [bool(i >> (signal.SIGINT - 1) & 1) for _, i in found.values()],
        "parent_handler_kept": signal.getsignal(signal.SIGTERM) is flag,
    }))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/status")
def test_workers_take_sigterm_s_default_action_whatever_the_parent_set(
    sqlite_ledger: Ledger,
) -> None:
    url = sqlite_ledger.engine.url.render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABLEDGER_")}
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, url], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["workers"] == 2
    assert found["sigterm_caught"] == [False, False]  # killed by the pool's SIGTERM
    assert found["sigint_ignored"] == [True, True]  # Ctrl-C is the verifying process's to handle
    assert found["parent_handler_kept"]
