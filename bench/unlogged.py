"""`labledger, tamper evidence off`: the same build as `serve`, with the Merkle log switched off.

An ASGI factory (uvicorn `--factory bench.unlogged:create_unlogged_app`) that builds
labledger's own app around a store whose transactions never queue entries for the log, and
with no background integrator. Everything else (routes, validation, idempotency, triggers,
hashing, audit) is labledger's code, unchanged: nothing is copied, the store is wrapped.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from sqlalchemy import Connection

from labledger.config import Settings
from labledger.http.app import create_app
from labledger.logs import configure_logging
from labledger.storage.engine import make_engine
from labledger.storage.sql_store import SqlStore, SqlWriter


class UnloggedStore(SqlStore):
    """labledger's SqlStore whose write transactions skip `flush_log_queue`."""

    def new_writer(self, conn: Connection) -> SqlWriter:
        writer = super().new_writer(conn)
        writer.flush_log_queue = _skip  # type: ignore[method-assign]
        return writer


def _skip() -> int:
    return 0


def create_unlogged_app() -> FastAPI:
    """As `labledger.http.asgi:app_from_env`, but unlogged and without the integrator."""
    settings = Settings.from_env(os.environ)
    settings.require_serving()
    configure_logging(settings.log_level)
    store = UnloggedStore(make_engine(settings.database_url))
    return create_app(settings, store, integrate_in_background=False)
