"""A parent that has imported labledger once and forks `labledger serve` processes from it.

Each child runs the real `serve` command (`labledger.cli.main(["serve", ...])`) in its own
process, with its own environment and log file, so `kill -9` and restarts behave exactly as
for `labledger serve`; forking merely skips the seconds an interpreter needs to import the
service. Protocol on stdin/stdout, one JSON object a line: {"argv", "env", "log"} -> pid.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from typing import Any

import uvicorn  # noqa: F401  (imported once here, so children start in milliseconds)

import labledger.cli
import labledger.http.asgi

PR_SET_PDEATHSIG = 1


def _child(request: dict[str, Any]) -> None:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # If this fork server dies (the test run ended), its servers die with it.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    log = os.open(str(request["log"]), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.environ.clear()
    os.environ.update(dict(request["env"]))
    code = 1
    try:
        code = labledger.cli.main(list(request["argv"]))
    finally:
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    # Children are reaped by the kernel; the tests watch them through /proc and signals.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _child(request)
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
