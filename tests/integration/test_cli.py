"""The `labledger` command line, run in-process through `main()`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from labledger.cli import main
from labledger.services.saved import format_saved_delivery
from tests.conftest import Ledger
from tests.support import SECRET, body_of, commit, headers_for, push_payload


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, ledger: Ledger) -> Ledger:
    for name in ("LABLEDGER_CONFIG", "LABLEDGER_API_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", ledger.url)
    monkeypatch.setenv("LABLEDGER_GITHUB_WEBHOOK_SECRET", SECRET)
    return ledger


def _json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    capsys.readouterr()
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def _save(path: Path, payload: dict[str, object], delivery_id: str) -> Path:
    body = body_of(payload)
    path.write_bytes(format_saved_delivery(headers_for(body, delivery_id=delivery_id), body))
    return path


def test_sessions_and_ingest_and_attempts(
    env: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A session made by the CLI receives saved deliveries ingested by the CLI, then listed."""
    created = _json(
        capsys,
        "sessions",
        "create",
        "--lab-id",
        "lab-7",
        "--subject-id",
        "team-3",
        "--repository-id",
        "186853002",
        "--opens-at",
        "2025-01-01T00:00:00Z",
        "--due-at",
        "2025-11-24T15:00:00Z",
        "--json",
    )
    assert isinstance(created, dict) and created["lab_id"] == "lab-7"
    c = commit()
    first = _save(tmp_path / "one.http", push_payload([c]), "cli-1")
    second = _save(tmp_path / "two.http", push_payload([commit()]), "cli-2")
    assert main(["ingest", str(first), str(second), str(first)]) == 0
    assert "1 duplicate, 2 recorded" in capsys.readouterr().out

    listed = _json(capsys, "attempts", "list", "--session", str(created["id"]), "--json")
    assert isinstance(listed, list) and [a["late"] for a in listed] == [True, True]
    shown = _json(capsys, "attempts", "show", str(listed[0]["id"]), "--json")
    assert isinstance(shown, dict) and shown["attempt"]["commit_sha"] == c["id"]
    by_commit = _json(capsys, "attempts", "list", "--commit", c["id"], "--json")
    assert isinstance(by_commit, list) and len(by_commit) == 1
    assert len(_json(capsys, "sessions", "list", "--json")) == 1  # type: ignore[arg-type]
    assert main(["sessions", "show", str(created["id"])]) == 0
    assert main(["attempts", "list", "--session", str(created["id"])]) == 0
    assert "on time" not in capsys.readouterr().out


def test_ingest_refuses_bad_files_and_says_why(
    env: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tampered or unreadable saved delivery is refused with its reason; nothing is stored."""
    good = _save(tmp_path / "good.http", push_payload([commit()]), "cli-bad")
    tampered = tmp_path / "tampered.http"
    tampered.write_bytes(good.read_bytes().replace(b"work on lab", b"work on LAB"))
    garbage = tmp_path / "garbage.http"
    garbage.write_bytes(b"no headers here")
    assert main(["ingest", str(tampered), str(garbage)]) == 1
    err = capsys.readouterr().err
    assert "signature does not match" in err and "no blank line" in err
    assert env.store.count_rows()["deliveries"] == 0


def test_missing_session_is_an_error(env: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    """Showing something that does not exist exits 1 with a message, not a traceback."""
    assert main(["sessions", "show", "12345"]) == 1
    assert "session 12345 not found" in capsys.readouterr().err


def test_serve_refuses_without_required_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`serve` names the missing secret and tokens and exits 2 instead of running unsigned."""
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.delenv("LABLEDGER_GITHUB_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("LABLEDGER_API_TOKENS", raising=False)
    assert main(["serve"]) == 2
    err = capsys.readouterr().err
    assert "LABLEDGER_GITHUB_WEBHOOK_SECRET" in err and "LABLEDGER_API_TOKENS" in err


def test_unmigrated_database_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Commands other than migrate refuse a database that is not at the current schema."""
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", f"sqlite:///{tmp_path / 'new.db'}")
    assert main(["sessions", "list"]) == 2
    assert "labledger migrate" in capsys.readouterr().err
    assert main(["migrate"]) == 0
    assert main(["sessions", "list"]) == 0


def test_config_file_and_unknown_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A TOML file with LABLEDGER_* keys is read; an unknown key is named in the error."""
    db = tmp_path / "from-file.db"
    config = tmp_path / "labledger.toml"
    config.write_text(f'LABLEDGER_DATABASE_URL = "sqlite:///{db}"\n')
    monkeypatch.delenv("LABLEDGER_DATABASE_URL", raising=False)
    assert main(["--config", str(config), "migrate"]) == 0
    assert db.exists()
    config.write_text('LABLEDGER_DATABSE_URL = "typo"\n')
    assert main(["--config", str(config), "migrate"]) == 2
    assert "LABLEDGER_DATABSE_URL" in capsys.readouterr().err
