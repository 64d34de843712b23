"""The ASGI factory `serve` runs: settings from the environment, startup objects frozen."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from labledger.core.errors import ConfigError
from labledger.http.asgi import app_from_env
from labledger.storage import migrate
from labledger.storage.engine import make_engine
from tests.support import SIGNER


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


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


def test_the_factory_freezes_what_startup_made(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, unfrozen: None
) -> None:
    _serving_env(monkeypatch, tmp_path)
    assert gc.get_freeze_count() == 0
    app = app_from_env()
    assert isinstance(app, FastAPI)
    # Modules, the app and the table metadata: tens of thousands of objects, out of the
    # collector's full passes from now on.
    assert gc.get_freeze_count() > 10_000


def test_the_factory_refuses_to_serve_without_a_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, unfrozen: None
) -> None:
    _serving_env(monkeypatch, tmp_path)
    monkeypatch.delenv("LABLEDGER_GITHUB_WEBHOOK_SECRET")
    with pytest.raises(ConfigError, match="GITHUB_WEBHOOK_SECRET"):
        app_from_env()
    assert gc.get_freeze_count() == 0


def test_the_factory_refuses_another_ledgers_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, unfrozen: None
) -> None:
    """Any ASGI server running the factory refuses a key whose origin is not this ledger's."""
    _serving_env(monkeypatch, tmp_path, origin="labledger/another-ledger")
    with pytest.raises(ConfigError, match="belongs to another ledger"):
        app_from_env()


def test_malloc_arenas_are_capped_unless_the_operator_chose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from labledger.http.asgi import few_malloc_arenas

    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert few_malloc_arenas() is False  # the environment's choice stands
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    libc_is_glibc = Path("/proc/self/maps").read_text().count("libc.so.6") > 0
    assert few_malloc_arenas() is libc_is_glibc
