"""ASGI entry point for `labledger serve` and any ASGI server.

Use `labledger.http.asgi:app_from_env` as a factory (uvicorn `--factory`)."""

from __future__ import annotations

import os

from fastapi import FastAPI

from labledger.compose import Ledger
from labledger.config import Settings
from labledger.core.errors import ConfigError
from labledger.http.app import create_app
from labledger.http.header_timeout import HeaderTimeoutH11Protocol
from labledger.logs import configure_logging


def app_from_env() -> FastAPI:
    """Factory: read settings when the server starts a worker, never at import time."""
    settings = Settings.from_env(os.environ)
    settings.require_serving()
    configure_logging(settings.log_level)
    HeaderTimeoutH11Protocol.configure(settings.header_timeout_seconds)
    ledger = Ledger.from_settings(settings)
    signer = settings.signer()
    refusal = ledger.key_refusal(signer.name)
    if refusal is not None:  # any ASGI server, not only `labledger serve`, signs for one ledger
        ledger.close()
        raise ConfigError(refusal)
    return create_app(settings, ledger.store, signer, integrate_in_background=True)
