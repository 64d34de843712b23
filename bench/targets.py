"""The servers under test, each on a database of its own, and the CPU they spend per phase."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import naive_store
from bench.databases import Database, Databases, create_ledger_sessions, migrate_ledger
from bench.loadgen import Phase
from bench.procstat import cpu_delta, cpu_of, process_tree, tree_peak_rss_mb
from bench.servers import (
    Server,
    labledger_command,
    labledger_env,
    running,
    server_env,
    uvicorn_command,
)
from bench.stats import Cost, phase_figures
from labledger.storage.engine import make_engine
from labledger.storage.sql_store import SqlStore


@dataclass(frozen=True, slots=True)
class Target:
    """A running server (or none, for the database bound) and the database it writes."""

    name: str
    server: Server | None
    database: Database | None
    databases: Databases
    sessions: dict[int, int] = field(default_factory=dict)  # repository id -> session id

    @property
    def port(self) -> int:
        if self.server is None:
            raise ValueError(f"{self.name} has no server")
        return self.server.port

    def stored_attempts(self) -> int:
        if self.database is None:
            return 0
        engine = make_engine(self.database.url)
        try:
            if self.name == "naive":
                return naive_store.count_attempts(engine)
            return SqlStore(engine).count_rows()["attempts"]
        finally:
            engine.dispose()

    def peak_rss_mb(self) -> float | None:
        """The server's processes together: `labledger serve` runs its integrator beside it."""
        return None if self.server is None else round(tree_peak_rss_mb(self.server.pid), 1)


class BackendSampler:
    """The CPU of the PostgreSQL processes serving one database, sampled through a phase.

    Pool connections open and close during a phase; sampling every `interval` seconds keeps
    all but the last moments of a closed connection's CPU (a backend first seen after the
    start began during the phase, so it counts from zero).
    """

    def __init__(self, target: Target, interval: float = 0.5) -> None:
        self._target = target
        self._interval = interval
        self._first: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        database = self._target.database
        if database is None or database.dialect != "postgresql":
            return
        seen = cpu_of(self._target.databases.backend_pids(database))
        for pid in seen:
            self._first.setdefault(pid, 0.0)
        self._last.update(seen)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def __enter__(self) -> BackendSampler:
        self._sample()
        self._first = dict(self._last)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._sample()

    @property
    def spent_s(self) -> float:
        return sum(max(0.0, last - self._first.get(pid, 0.0)) for pid, last in self._last.items())


def measured(target: Target, run: Callable[[], Phase]) -> dict[str, Any]:
    """Run one phase and charge the CPU it took to the generator, the server and PostgreSQL."""
    server = target.server.pid if target.server else None
    server_before = cpu_of(process_tree(server)) if server else {}
    with BackendSampler(target) as database_cpu:
        phase = run()
    # Processes started during the phase (an integrator started again) count from zero.
    server_s = cpu_delta(server_before, cpu_of(process_tree(server))) if server else 0.0
    if target.server is None:  # the database bound writes from this very process
        cost = Cost(0.0, phase.generator_cpu_s, database_cpu.spent_s)
    else:
        cost = Cost(phase.generator_cpu_s, server_s, database_cpu.spent_s)
    return phase_figures(phase, cost)


@contextmanager
def labledger(
    databases: Databases, dialect: str, repos: list[int], logs: Path, *serve_options: str
) -> Iterator[Target]:
    """`labledger serve` as it ships (one worker), on a fresh migrated database; with
    `serve_options`, as those options make it."""
    database = databases.create(dialect, "ledger")
    try:
        migrate_ledger(database)
        sessions = create_ledger_sessions(database, repos)
        env = labledger_env(database.url, logs)

        def command(port: int) -> list[str]:
            return [*labledger_command(port), *serve_options]

        with running("labledger", command, env, logs) as server:
            yield Target("labledger", server, database, databases, sessions)
    finally:
        databases.drop(database)


@contextmanager
def labledger_profiled(
    databases: Databases, dialect: str, repos: list[int], logs: Path, out: Path
) -> Iterator[Target]:
    """`labledger serve` under bench/profile.py's sampler, which writes `out` as it exits."""
    database = databases.create(dialect, "profiled")
    try:
        migrate_ledger(database)
        sessions = create_ledger_sessions(database, repos)
        env = labledger_env(database.url, logs)

        def command(port: int) -> list[str]:
            serve = labledger_command(port)[1:]
            return [sys.executable, "-m", "bench.profile", str(out), *serve]

        with running("labledger-profiled", command, env, logs) as server:
            yield Target("labledger", server, database, databases, sessions)
    finally:
        databases.drop(database)


@contextmanager
def labledger_unlogged(
    databases: Databases, dialect: str, repos: list[int], logs: Path
) -> Iterator[Target]:
    """The same build with tamper evidence off (bench/unlogged.py), served by uvicorn with
    the options `labledger serve` passes it: one worker, no access log, log level info."""
    database = databases.create(dialect, "unlogged")
    try:
        migrate_ledger(database)
        sessions = create_ledger_sessions(database, repos)
        env = labledger_env(database.url, logs)
        command = _uvicorn("bench.unlogged:create_unlogged_app", "info")
        with running("labledger-unlogged", command, env, logs) as server:
            yield Target("labledger_unlogged", server, database, databases, sessions)
    finally:
        databases.drop(database)


@contextmanager
def naive(databases: Databases, dialect: str, repos: list[int], logs: Path) -> Iterator[Target]:
    database = databases.create(dialect, "naive")
    try:
        engine = make_engine(database.url)
        naive_store.create_schema(engine, repos)
        engine.dispose()
        env = server_env({"BENCH_NAIVE_DATABASE_URL": database.url})
        command = _uvicorn("bench.baselines:create_naive_app")
        with running("naive", command, env, logs) as server:
            yield Target("naive", server, database, databases)
    finally:
        databases.drop(database)


@contextmanager
def http_bound(databases: Databases, logs: Path) -> Iterator[Target]:
    command = _uvicorn("bench.baselines:create_http_bound_app")
    with running("http_bound", command, server_env({}), logs) as server:
        yield Target("http_bound", server, None, databases)


@contextmanager
def db_bound(databases: Databases, dialect: str, repos: list[int]) -> Iterator[Target]:
    database = databases.create(dialect, "dbbound")
    try:
        migrate_ledger(database)
        sessions = create_ledger_sessions(database, repos)
        yield Target("db_bound", None, database, databases, sessions)
    finally:
        databases.drop(database)


def _uvicorn(factory: str, log_level: str = "warning") -> Callable[[int], list[str]]:
    return lambda port: uvicorn_command(factory, port, log_level)
