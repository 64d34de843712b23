"""A private, throw-away PostgreSQL 15 cluster that a test may stop and start at will.

The machine's shared server at 127.0.0.1:5432 is never touched. The cluster lives in a
temporary directory owned by `postgres` (initdb refuses to run as root), listens on a free
port on 127.0.0.1 only, and is destroyed whatever happens.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

from tests.integration.servers import free_port

PG_BIN = Path(os.environ.get("LABLEDGER_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"
TIMEOUT_S = 120


def binaries_missing() -> str | None:
    """Why a private cluster cannot be made here, or None when it can."""
    for name in ("initdb", "pg_ctl"):
        if not (PG_BIN / name).is_file():
            return f"{PG_BIN / name} not found (set LABLEDGER_TEST_PG_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"running as root and there is no {PG_USER!r} OS user to run PostgreSQL"
    return None


class PrivateCluster:
    """initdb + pg_ctl on a temporary directory; `url` is a superuser URL to its database."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="labledger-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.database = "labledger"
        if os.geteuid() == 0:
            account = pwd.getpwnam(PG_USER)
            os.chown(self.root, account.pw_uid, account.pw_gid)

    def initialize(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", PG_USER, "-A", "trust", "--no-sync")

    def url(self, user: str = PG_USER, database: str | None = None) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database or self.database}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        log = str(self.root / "server.log")
        self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            str(TIMEOUT_S),
            "-D",
            str(self.data),
            "-l",
            log,
            "-o",
            options,
        )

    def stop_immediately(self) -> None:
        """`pg_ctl stop -m immediate`: every backend dies at once, as in a crash."""
        self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data))

    def create_database(self) -> None:
        with psycopg.connect(self.url(database="postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data), check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str, check: bool = True) -> None:
        command = [str(PG_BIN / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", PG_USER, "--", *command]
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT_S, cwd=self.root
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr}{done.stdout}")
