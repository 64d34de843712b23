"""Fixtures of the reliability suite: its budget, server launchers and a private PostgreSQL.

The budget is small by default (the README's test run) and large with
LABLEDGER_TEST_RELIABILITY=long (`make reliability`); each figure can also be set alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.reliability.launch import ExecLauncher, ForkLauncher
from tests.reliability.pgcluster import PrivateCluster, binaries_missing

PROFILE_ENV = "LABLEDGER_TEST_RELIABILITY"


@dataclass(frozen=True)
class Budget:
    """How hard each scenario tries; every loop in the suite is bounded by these."""

    crash_trials: int
    crash_deliveries: int
    outage_rounds: int
    contention_deliveries: int
    contention_rounds: int
    schema_examples: int
    slow_body_cases: int

    @classmethod
    def from_env(cls, environ: dict[str, str] | os._Environ[str]) -> Budget:
        long = environ.get(PROFILE_ENV, "") == "long"
        defaults = {
            "crash_trials": 50 if long else 3,
            "crash_deliveries": 24 if long else 10,
            "outage_rounds": 5 if long else 1,
            "contention_deliveries": 160 if long else 24,
            "contention_rounds": 3 if long else 1,
            "schema_examples": 150 if long else 6,
            "slow_body_cases": 4 if long else 2,
        }
        return cls(
            **{
                name: int(environ.get(f"LABLEDGER_TEST_{name.upper()}", value))
                for name, value in defaults.items()
            }
        )


@pytest.fixture(scope="session")
def budget() -> Budget:
    return Budget.from_env(os.environ)


@pytest.fixture(scope="session")
def fork_launcher() -> Iterator[ForkLauncher]:
    """Forks `labledger serve` processes from one pre-imported parent."""
    launcher = ForkLauncher()
    yield launcher
    launcher.close()


@pytest.fixture
def exec_launcher() -> ExecLauncher:
    """Runs the installed `labledger serve` in a fresh interpreter."""
    return ExecLauncher()


@pytest.fixture
def private_pg() -> Iterator[PrivateCluster]:
    """A started, private PostgreSQL 15 cluster with an empty `labledger` database."""
    missing = binaries_missing()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"private PostgreSQL cluster impossible in CI: {missing}", pytrace=False)
        pytest.skip(f"private PostgreSQL cluster impossible: {missing}")
    cluster = PrivateCluster()
    try:
        cluster.initialize()
        cluster.start()
        cluster.create_database()
        yield cluster
    finally:
        cluster.destroy()
