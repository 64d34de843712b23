"""ASGI entry point for `labledger serve` and any ASGI server.

Use `labledger.http.asgi:app_from_env` as a factory (uvicorn `--factory`)."""

from __future__ import annotations

import os

from fastapi import FastAPI

from labledger.config import Settings
from labledger.http.app import create_app
from labledger.logs import configure_logging
from labledger.storage.engine import make_engine
from labledger.storage.sql_store import SqlStore


def app_from_env() -> FastAPI:
    """Factory: read settings when the server starts a worker, never at import time."""
    settings = Settings.from_env(os.environ)
    settings.require_serving()
    configure_logging(settings.log_level)
    store = SqlStore(make_engine(settings.database_url), settings.subscriber_names())
    return create_app(settings, store, integrate_in_background=True)
