"""A newcomer's common mistakes end in one line that names the fix, and exit 2."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from labledger.cli import main
from tests.conftest import PG_ENV, Ledger
from tests.support import SIGNER

SERVING_SECRET = "a-webhook-secret-of-forty-characters-0001"
SERVING_TOKEN = "admin:" + "t" * 40


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No LABLEDGER_* setting from the developer's shell, and a fresh working directory."""
    for name in ("LABLEDGER_CONFIG", "LABLEDGER_API_TOKENS", "LABLEDGER_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _one_line(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert code == 2
    return err


def test_cli_wrong_postgres_port_is_one_line(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PostgreSQL URL with a port nothing listens on names the port and the setting."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", f"postgresql://postgres@127.0.0.1:{port}/x")
    err = _one_line(capsys, "sessions", "list")
    assert str(port) in err and "LABLEDGER_DATABASE_URL" in err


@pytest.mark.postgres
def test_cli_missing_postgres_database_is_one_line(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PostgreSQL database that does not exist is named, with the command that makes it."""
    admin = os.environ.get(PG_ENV)
    if not admin:
        pytest.skip(f"PostgreSQL not configured ({PG_ENV})")
    url = make_url(admin).set(database="labledger_no_such_db")
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", url.render_as_string(hide_password=False))
    err = _one_line(capsys, "migrate")
    assert "createdb labledger_no_such_db" in err


def test_cli_sqlite_path_in_missing_folder_is_one_line(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`migrate` into a folder that does not exist says which folder to create."""
    missing = clean_env / "no" / "such" / "folder"
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", f"sqlite:///{missing}/ledger.db")
    err = _one_line(capsys, "migrate")
    assert f"mkdir -p {missing}" in err
    assert not (clean_env / "no").exists()


@pytest.mark.parametrize("url", ["mysql://root@localhost/labs", "postgresql+nodriver://x/y"])
def test_cli_unsupported_url_scheme_is_one_line(
    url: str,
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A database URL labledger cannot use says which schemes it can."""
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", url)
    err = _one_line(capsys, "migrate")
    assert "sqlite:///" in err and "postgresql://" in err


def test_cli_receipt_not_json_is_one_line(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A receipt file that is not JSON says how to make a receipt."""
    (clean_env / "receipt.json").write_text("<html>not a receipt</html>\n")
    (clean_env / "key.pub").write_text("unused\n")
    err = _one_line(capsys, "verify-receipt", "receipt.json", "--public-key", "key.pub")
    assert "labledger prove attempt" in err


@pytest.mark.parametrize("score", ["abc", "NaN", "1,5", "-1", "0.0001"])
def test_cli_bad_score_is_one_line(
    score: str,
    clean_env: Path,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A score that is not a plain non-negative number is named with the option."""
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", ledger.url)
    argv = ["verifications", "add", "1", "--verifier", "ci", "--run-id", "r1", "--status"]
    err = _one_line(capsys, *argv, "passed", "--score", score)
    assert "--score" in err


@pytest.mark.parametrize("details", ["{bad", "[1, 2]", '"text"'])
def test_cli_bad_details_is_one_line(
    details: str,
    clean_env: Path,
    ledger: Ledger,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--details that is not a JSON object says what shape it needs."""
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", ledger.url)
    argv = ["verifications", "add", "1", "--verifier", "ci", "--run-id", "r1", "--status"]
    err = _one_line(capsys, *argv, "passed", "--details", details)
    assert "--details" in err and "JSON object" in err


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another program is listening on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_cli_port_in_use_is_one_line(
    clean_env: Path,
    sqlite_ledger: Ledger,
    busy_port: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`serve` on a port already in use says so before announcing that it serves."""
    key = clean_env / "signing.key"
    key.write_text(SIGNER.encode() + "\n")  # the key of the test ledgers' origin
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", sqlite_ledger.url)
    monkeypatch.setenv("LABLEDGER_GITHUB_WEBHOOK_SECRET", SERVING_SECRET)
    monkeypatch.setenv("LABLEDGER_API_TOKENS", SERVING_TOKEN)
    monkeypatch.setenv("LABLEDGER_SIGNING_KEY_FILE", str(key))
    err = _one_line(capsys, "serve", "--port", str(busy_port))
    assert "--port" in err and "serving on" not in err
