"""What a newcomer meets: a light `--help`, no stray database files, JSON where asked."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest

from labledger.cli import VERBS, cli, main
from labledger.storage import migrate
from labledger.storage.merkle_log import SqlLog
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.integration.servers import LABLEDGER, free_port, server_env, write_signing_key
from tests.integration.servers import _wait_healthy as wait_healthy
from tests.support import SIGNER, commit, push_payload, session_spec

HEAVY = ("sqlalchemy", "fastapi", "starlette", "uvicorn", "cryptography", "httpx")
HEAVY += ("prometheus_client", "pydantic", "alembic", "structlog", "psycopg")
READ_ONLY = [
    ["sessions", "list"],
    ["sessions", "show", "1"],
    ["attempts", "list", "--session", "1"],
    ["attempts", "show", "1"],
    ["checkpoint"],
    ["verify"],
    ["report", "lab-1"],
    ["retention", "plan"],
    ["dispatch", "dead-letters"],
]


def _modules_after(code: str) -> set[str]:
    """Top-level packages imported by a fresh interpreter that ran `code`."""
    probe = f"import sys\n{code}\nsys.stderr.write(' '.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return {name.split(".")[0] for name in done.stderr.split()}


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_help_and_version_import_no_heavy_library(flag: str) -> None:
    """`labledger --help` and `--version` import none of the libraries verbs need."""
    imported = _modules_after(f"from labledger.cli import main; main([{flag!r}])")
    assert imported.isdisjoint(HEAVY), sorted(imported.intersection(HEAVY))


def test_reading_verb_imports_no_server_or_migration_library(sqlite_ledger: Ledger) -> None:
    """A reading verb checks the schema without Alembic and never loads the server's stack."""
    code = "from labledger.cli import main; main(['sessions', 'list'])"
    imported = _modules_after(
        f"import os; os.environ['LABLEDGER_DATABASE_URL'] = {sqlite_ledger.url!r}\n{code}"
    )
    assert imported.isdisjoint({"alembic", "uvicorn", "prometheus_client"})


def test_every_listed_verb_is_the_command_of_that_name() -> None:
    """Each lazily listed verb resolves to a click command carrying the listed name."""
    context = click.Context(cli)
    for name in VERBS:
        command = cli.get_command(context, name)
        assert command is not None and command.name == name


def test_newest_revision_matches_alembic_head() -> None:
    """The schema check's own reading of the migration files agrees with Alembic's head."""
    assert migrate.newest_revision() == migrate.head_revision() is not None


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A signing key configured for the commands, so they reach the database."""
    path = tmp_path / "signing.key"
    path.write_text(SIGNER.encode() + "\n")
    monkeypatch.setenv("LABLEDGER_SIGNING_KEY_FILE", str(path))
    monkeypatch.delenv("LABLEDGER_CONFIG", raising=False)
    return path


@pytest.mark.parametrize("argv", READ_ONLY, ids=" ".join)
def test_read_only_commands_never_create_a_database_file(
    argv: list[str],
    key_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A reading command on a missing SQLite ledger says how to make one and creates nothing."""
    missing = tmp_path / "ledger.db"
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", f"sqlite:///{missing}")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "labledger migrate" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["signing.key"]


@pytest.fixture
def logged(ledger: Ledger, key_file: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    """A ledger with one session, two attempts and a signed checkpoint over them."""
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", ledger.url)
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    deliver(ledger.store, push_payload([commit(), commit()]))
    SqlLog(ledger.engine).integrate(SIGNER, datetime.now(UTC))
    return ledger


def _output(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_checkpoint_json_is_the_api_shape(
    logged: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """`checkpoint --json` gives the signed note with its size, root and verifier key."""
    note = _output(capsys, "checkpoint")
    shown = json.loads(_output(capsys, "checkpoint", "--json"))
    latest = SqlLog(logged.engine).latest_checkpoint()
    assert latest is not None and shown["note"] == note
    assert shown["tree_size"] == latest.tree_size
    assert shown["root_hash"] == f"sha256:{latest.root_hash.hex()}"
    assert shown["public_key"] == SIGNER.verifier.encode()


def test_verify_json_reports_intact_ledger(
    logged: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """`verify --json` prints the report as data: intact, its counts, no problems."""
    report = json.loads(_output(capsys, "verify", "--json"))
    latest = SqlLog(logged.engine).latest_checkpoint()
    assert latest is not None
    assert report["intact"] is True and report["problems"] == []
    assert report["tree_size"] == latest.tree_size and report["checkpoints"] == 1


def test_report_of_unknown_lab_says_so(logged: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    """A report of a lab with no sessions says there are none instead of printing nothing."""
    capsys.readouterr()
    assert main(["report", "no-such-lab"]) == 0
    assert "no sessions of lab 'no-such-lab'" in capsys.readouterr().err


def test_empty_attempts_list_says_so(logged: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    """Listing the attempts of a commit never pushed says none are recorded."""
    capsys.readouterr()
    assert main(["attempts", "list", "--commit", "0" * 40]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "no attempts of commit" in captured.err


def test_uvicorn_access_and_error_lines_are_json() -> None:
    """After configure_logging, uvicorn's error and access records print as JSON objects."""
    code = (
        "import logging\nfrom labledger.logs import configure_logging\nconfigure_logging()\n"
        "logging.getLogger('uvicorn.error').info('Started server process [%d]', 7)\n"
        "logging.getLogger('uvicorn.access').info('%s - \"%s %s HTTP/%s\" %d', "
        "'10.0.0.1:5000', 'GET', '/healthz', '1.1', 200)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [line["logger"] for line in lines] == ["uvicorn.error", "uvicorn.access"]
    access = lines[1]
    assert (access["method"], access["path"], access["status"]) == ("GET", "/healthz", 200)


@pytest.mark.slow
def test_served_log_is_json_throughout(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    """Every line a real `serve` writes, its announcement and access lines included, is JSON."""
    port = free_port()
    env = server_env(sqlite_ledger.url, write_signing_key(tmp_path), LABLEDGER_LOG_LEVEL="INFO")
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [LABLEDGER, "serve", "--port", str(port)], env=env, stdout=out, stderr=out
        )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, timeout=90.0)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        print(log.read_text())  # shown by pytest when an assertion below fails
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert lines[0]["event"] == "serving" and lines[0]["url"] == f"http://127.0.0.1:{port}"
    assert any(line.get("path") == "/healthz" for line in lines)
