"""Opening the database for a command, with a one-line fix for each way that fails."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from labledger.core.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

FIX_URL = "set LABLEDGER_DATABASE_URL to sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE"


def sqlite_path(url: str) -> Path | None:
    """The file a SQLite URL names; None for PostgreSQL and in-memory databases."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def open_engine(url: str) -> Engine:
    """An engine whose database answered, or a ConfigError that says what to change."""
    from sqlalchemy import exc as sa_exc

    from labledger.compose import make_engine

    try:
        path = sqlite_path(url)
        engine = make_engine(url)
    except (ValueError, ImportError, sa_exc.ArgumentError) as exc:
        raise ConfigError(f"LABLEDGER_DATABASE_URL: {exc}; {FIX_URL}") from None
    if path is not None and not path.parent.is_dir():
        raise ConfigError(
            f"the folder {path.parent} for the SQLite database does not exist; "
            f"create it (mkdir -p {path.parent}) or {FIX_URL}"
        )
    try:
        with engine.connect():
            pass
    except sa_exc.DBAPIError as exc:
        engine.dispose()
        raise ConfigError(_unreachable(engine, exc)) from None
    return engine


def _unreachable(engine: Engine, exc: Exception) -> str:
    shown = engine.url.render_as_string(hide_password=True)
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    database = engine.url.database
    if engine.dialect.name == "postgresql" and f'database "{database}" does not exist' in reason:
        return f"no database {database!r} at {shown}; create it (createdb {database}) or {FIX_URL}"
    return f"cannot open the database at {shown}: {reason}; check the host and port, or {FIX_URL}"


def require_ledger(url: str) -> None:
    """Refuse before connecting when there is no ledger to read: SQLite would create the file."""
    path = sqlite_path(url)
    if path is not None and not path.is_file():
        raise ConfigError(
            f"no ledger at {path.absolute()}; make one with `labledger migrate` (or {FIX_URL})"
        )
