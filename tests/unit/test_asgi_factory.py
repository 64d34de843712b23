"""The ASGI factory `serve` runs: settings from the environment, one ledger's key."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI

from labledger.config import ConfigError
from labledger.http.asgi import app_from_env
from labledger.storage import migrate
from labledger.storage.engine import make_engine
from tests.support import SIGNER


def _serving_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, origin: str = SIGNER.name
) -> None:
    key = tmp_path / "signing.key"
    key.write_text(SIGNER.encode() + "\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine, origin=origin)
    engine.dispose()
    for name, value in {
        "LABLEDGER_DATABASE_URL": url,
        "LABLEDGER_GITHUB_WEBHOOK_SECRET": "s",
        "LABLEDGER_API_TOKENS": "t" * 32,
        "LABLEDGER_SIGNING_KEY_FILE": str(key),
    }.items():
        monkeypatch.setenv(name, value)


def test_the_factory_builds_the_app_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With the settings `serve` needs in the environment, the factory answers an app."""
    _serving_env(monkeypatch, tmp_path)
    assert isinstance(app_from_env(), FastAPI)


def test_the_factory_refuses_to_serve_without_a_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _serving_env(monkeypatch, tmp_path)
    monkeypatch.delenv("LABLEDGER_GITHUB_WEBHOOK_SECRET")
    with pytest.raises(ConfigError, match="GITHUB_WEBHOOK_SECRET"):
        app_from_env()


def test_the_factory_refuses_another_ledgers_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Any ASGI server running the factory refuses a key whose origin is not this ledger's."""
    _serving_env(monkeypatch, tmp_path, origin="labledger/another-ledger")
    with pytest.raises(ConfigError, match="belongs to another ledger"):
        app_from_env()
