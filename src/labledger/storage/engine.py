"""Engines for the two supported databases, with the settings the ledger relies on."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Dialect, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from labledger.core.errors import StoreUnavailable
from labledger.core.leaves import encode_plain_json

WRITE_OPTION = "labledger_write"
# A writer that will simply try again later (a background integration round) waits for
# SQLite's write lock this long, not the busy timeout.
BRIEF_WAIT_OPTION = "labledger_brief_wait"
BRIEF_WAIT_MS = 100
SQLITE_BUSY_TIMEOUT_S = 5.0
SQLITE_BUSY_MS = int(SQLITE_BUSY_TIMEOUT_S * 1000)


_WRITER_LOCKS: WeakKeyDictionary[Engine, threading.RLock] = WeakKeyDictionary()
_MAKING_LOCK = threading.Lock()


def writer_lock(engine: Engine) -> AbstractContextManager[Any]:
    """What this process's writers to one database take turns on before they begin.

    SQLite has one write lock per file. Waiting for it here, where a waiter wakes as soon as
    the lock is free, rather than in SQLite's busy handler (which sleeps in steps of up to
    100 ms, and gives up after the busy timeout with a 503) keeps the group commit of the
    webhooks (storage/group_commit.py: one turn a batch), the integrator and the dispatcher
    of one process from delaying one another. Other processes (a second server, `labledger
    ingest`) still meet the busy timeout. PostgreSQL locks rows, not the database: no lock.
    """
    if engine.dialect.name != "sqlite":
        return nullcontext()
    with _MAKING_LOCK:
        return _WRITER_LOCKS.setdefault(engine, threading.RLock())


def normalize_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and select the psycopg 3 driver for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def stored_json(value: Any) -> str:
    """How JSON columns are written: as canonical JSON text, the form a leaf holds them in
    (keys sorted, no spaces, UTF-8 unescaped), so that `verify` can hash the text as stored
    instead of decoding and encoding every value again. What that form cannot hold (NaN, a
    key that is not text, a lone surrogate no UTF-8 encodes) is written as `json.dumps`
    writes it; `verify` then canonicalizes it as before."""
    try:
        text = encode_plain_json(value)
    except (TypeError, ValueError):
        return json.dumps(value)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return json.dumps(value)
    return text


# Connections a process may open: enough for the server's request lanes (http/limits.py,
# LABLEDGER_API_CONCURRENCY + LABLEDGER_WEBHOOK_CONCURRENCY + operations) and its background
# integrator and dispatcher, so that a full API lane never leaves a webhook without one.
POOL_SIZE = 10
POOL_OVERFLOW = 24
# A request that still finds the pool empty answers 503 + Retry-After this soon, instead of
# waiting SQLAlchemy's default 30 s (past GitHub's 10 s) and then answering 500.
POOL_TIMEOUT_S = 3.0


def make_engine(url: str, **engine_args: Any) -> Engine:
    url = normalize_url(url)
    engine_args.setdefault("json_serializer", stored_json)
    # Bound values are request data (student ids, commit messages): an error names the
    # statement, never them, so nothing a client sent reaches a log through a database error.
    engine_args.setdefault("hide_parameters", True)
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql" or parsed.database not in (None, "", ":memory:"):
        engine_args.setdefault("pool_size", POOL_SIZE)
        engine_args.setdefault("max_overflow", POOL_OVERFLOW)
        engine_args.setdefault("pool_timeout", POOL_TIMEOUT_S)
    if backend == "sqlite":
        return _sqlite_engine(url, **engine_args)
    if backend == "postgresql":
        engine_args.setdefault("pool_pre_ping", True)
        return create_engine(url, **engine_args)
    raise ValueError(f"unsupported database {backend!r}: use sqlite:/// or postgresql://")


def _create_private_database(url: str) -> None:
    """Create a new SQLite file 0600 before SQLite does (0644 under the usual umask): it
    holds personal data. SQLite gives its -wal and -shm files the database file's mode."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    # An existing database keeps its mode; a missing or read-only folder is SQLite's to report.
    with suppress(FileExistsError, FileNotFoundError, PermissionError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _sqlite_engine(url: str, **engine_args: Any) -> Engine:
    _create_private_database(url)
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False}
    engine = create_engine(url, connect_args=connect_args, **engine_args)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite's own is lazy).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # A writer takes the write lock up front: a deferred transaction that later upgrades
        # can fail with SQLITE_BUSY at once instead of waiting out the busy timeout.
        options = connection.get_execution_options()
        if not options.get(WRITE_OPTION, False):
            connection.exec_driver_sql("BEGIN")
        elif not options.get(BRIEF_WAIT_OPTION, False):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            # It holds this process's writer lock while it waits: webhooks queued behind it
            # would wait out two busy timeouts (past GitHub's 10 s) instead of one.
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {BRIEF_WAIT_MS}")
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            finally:
                connection.exec_driver_sql(f"PRAGMA busy_timeout = {SQLITE_BUSY_MS}")

    return engine


@contextmanager
def translate_db_errors() -> Iterator[None]:
    """An unreachable or locked database is a retryable 503, never a half-written 500."""
    try:
        yield
    except sa_exc.TimeoutError as exc:
        raise StoreUnavailable("no database connection free (the pool is exhausted)") from exc
    except sa_exc.OperationalError as exc:
        raise StoreUnavailable(str(exc.orig).strip().splitlines()[0]) from exc
    except sa_exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise StoreUnavailable("database connection lost") from exc
        raise


@contextmanager
def translate_driver_errors(dialect: Dialect) -> Iterator[None]:
    """translate_db_errors for statements run on the DBAPI connection itself, past
    SQLAlchemy (the integrator's and verify's reads, ingest's INSERTs)."""
    try:
        yield
    except dialect.loaded_dbapi.OperationalError as exc:
        raise StoreUnavailable(str(exc).strip().splitlines()[0]) from exc
