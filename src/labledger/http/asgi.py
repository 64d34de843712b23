"""ASGI entry point for `labledger serve` and any ASGI server.

Use `labledger.http.asgi:app_from_env` as a factory (uvicorn `--factory`)."""

from __future__ import annotations

import os

from fastapi import FastAPI

from labledger.config import ConfigError, Settings
from labledger.http.app import create_app
from labledger.http.header_timeout import HeaderTimeoutH11Protocol
from labledger.logs import configure_logging
from labledger.storage.engine import make_engine
from labledger.storage.migrate import key_refusal
from labledger.storage.sql_store import SqlStore


def app_from_env() -> FastAPI:
    """Factory: read settings when the server starts a worker, never at import time."""
    settings = Settings.from_env(os.environ)
    settings.require_serving()
    configure_logging(settings.log_level)
    HeaderTimeoutH11Protocol.configure(settings.header_timeout_seconds)
    store = SqlStore(make_engine(settings.database_url), settings.subscriber_names())
    signer = settings.signer()
    refusal = key_refusal(store.engine, signer.name)
    if refusal is not None:  # any ASGI server, not only `labledger serve`, signs for one ledger
        store.engine.dispose()
        raise ConfigError(refusal)
    return create_app(settings, store, signer, integrate_in_background=True)
