"""The integrator process: the Merkle log's integrator beside the web workers of `serve`.

Integrating is CPU work in Python (reading the queued rows, encoding leaves, hashing, writing
the tree). Inside a web worker it competes for the interpreter lock with the threads that
answer webhooks; in a process of its own it runs on another core. `serve` starts one per web
worker on PostgreSQL (http/integrator.py); the database lock of `SqlLog.integrate` lets one
round run at a time, so several are safe.

The child gets only what it needs: the database URL and its settings in its environment, the
signing key on its standard input (never on a command line or in a file it would have to be
told about). It stops on SIGTERM or SIGINT after the round in progress, and by itself when the
process that started it is gone.

Run by `IntegratorProcess`; `python -m labledger.services.integrate` is its entry point.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from types import FrameType

import structlog

from labledger.core.errors import StoreUnavailable
from labledger.core.note import SignerKey
from labledger.storage.merkle_log import SqlLog

log = structlog.get_logger("labledger.integrator")

# A round appends its batch under the integrator lock (on SQLite, the database's write lock):
# a bounded batch keeps that transaction, and the round's memory, small while a backlog
# drains; the next round takes the rest.
BACKGROUND_BATCH = 10_000
PARENT_ENV = "LABLEDGER_INTEGRATOR_PARENT_PID"  # the web worker, so the child notices orphaning
STOP_TIMEOUT_S = 10.0


def integrate_round(merkle_log: SqlLog, signer: SignerKey) -> None:
    """One integration round; a failure is logged and the next round tries again."""
    try:
        checkpoint = merkle_log.integrate(signer, None, BACKGROUND_BATCH, background=True)
    except StoreUnavailable as exc:
        log.warning("integrate.unavailable", detail=str(exc))
        return
    except Exception:
        # A failed round changes nothing (one transaction); keep going and say why loudly.
        log.exception("integrate.failed")
        return
    if checkpoint is not None:
        log.info("integrate.checkpoint", tree_size=checkpoint.tree_size)


class IntegratorProcess:
    """One integrator child process, started and stopped by a web worker."""

    def __init__(self, database_url: str, signer: SignerKey, interval: float, log_level: str):
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("LABLEDGER_")}
        self._env.update(
            LABLEDGER_DATABASE_URL=database_url,
            LABLEDGER_INTEGRATE_INTERVAL_SECONDS=repr(interval),
            LABLEDGER_LOG_LEVEL=log_level,
            **{PARENT_ENV: str(os.getpid())},
        )
        self._key = signer.encode()
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        process = subprocess.Popen(
            [sys.executable, "-m", "labledger.services.integrate"],
            stdin=subprocess.PIPE,
            env=self._env,
        )
        assert process.stdin is not None
        with process.stdin:
            process.stdin.write(self._key.encode("ascii"))
        self._process = process
        log.info("integrator.started", pid=process.pid)

    def exit_code(self) -> int | None:
        """None while it runs (or was never started); its exit code once it has stopped."""
        return self._process.poll() if self._process else None

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()  # finishes the round in progress
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.error("integrator.killed", pid=process.pid, after_s=STOP_TIMEOUT_S)
            process.kill()
            process.wait()


def run(merkle_log: SqlLog, signer: SignerKey, interval: float, parent: int) -> None:
    """Integrate every `interval` seconds until told to stop or orphaned."""
    stop = threading.Event()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # A first round at once: what arrived while this process started waits no longer.
    integrate_round(merkle_log, signer)
    while not stop.wait(interval):
        if os.getppid() != parent:
            log.warning("integrator.orphaned", parent=parent)
            break
        integrate_round(merkle_log, signer)
    log.info("integrator.stopped")


def main() -> None:
    # The web worker validated these settings and passes them on; reading them here directly
    # keeps pydantic (and the settings module) out of this process's memory.
    from labledger.logs import configure_logging
    from labledger.storage.engine import make_engine

    parent = int(os.environ.pop(PARENT_ENV))
    interval = float(os.environ["LABLEDGER_INTEGRATE_INTERVAL_SECONDS"])
    configure_logging(os.environ.get("LABLEDGER_LOG_LEVEL", "INFO"))
    signer = SignerKey.parse(sys.stdin.read())
    engine = make_engine(os.environ["LABLEDGER_DATABASE_URL"])  # one thread: one connection
    try:
        run(SqlLog(engine), signer, interval, parent)
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
