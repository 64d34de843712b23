"""Reads from a large ledger: over HTTP, through labledger's store in-process, and as bare SQL.

The three layers split a read's time: SQL alone (the database bound), labledger's store
(SQL plus its row mapping and connection handling), and the full HTTP route.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bench import bulk
from bench.config import BenchConfig
from bench.databases import Database, Databases, migrate_ledger
from bench.loadgen import Phase, WireRequest, closed_loop
from bench.payloads import get_request
from bench.servers import TOKEN, labledger_command, labledger_env, running
from bench.stats import combine, latency_ms
from bench.targets import Target, measured
from bench.wire import fetch
from labledger.storage.engine import make_engine
from labledger.storage.sql_store import SqlStore

KINDS = ("session_page", "commit_lookup", "delivery_lookup")
JOINED = (
    "SELECT a.*, p.sender_login, p.sender_id, p.pusher_name, p.pusher_email, d.delivery_id "
    "FROM attempts a JOIN pushes p ON p.id = a.push_id JOIN deliveries d ON d.id = a.delivery_pk "
)
SQL = {
    "session": "SELECT * FROM lab_sessions WHERE id = :key",
    "page": JOINED + "WHERE a.session_id = :key AND a.id > 0 ORDER BY a.id LIMIT 100",
    "by_sha": JOINED + "WHERE a.commit_sha = :key ORDER BY a.id",
    "delivery": "SELECT * FROM deliveries WHERE forge = 'github' AND delivery_id = :key",
    "push": "SELECT p.*, d.delivery_id, d.received_at FROM pushes p JOIN deliveries d "
    "ON d.id = p.delivery_pk WHERE p.delivery_pk = :key",
    "carried": "SELECT commit_sha FROM push_commits WHERE push_id = :key ORDER BY position",
    "by_delivery": JOINED + "WHERE a.delivery_pk = :key ORDER BY a.id",
}


def _keys(layout: bulk.Layout, count: int, seed: int) -> dict[str, list[Any]]:
    rng = random.Random(seed)
    return {
        "session_page": [rng.randint(1, layout.sessions) for _ in range(count)],
        "commit_lookup": [bulk.commit_sha(rng.randint(1, layout.attempts)) for _ in range(count)],
        "delivery_lookup": [
            bulk.delivery_id(rng.randint(1, layout.deliveries)) for _ in range(count)
        ],
    }


def _path(kind: str, key: object) -> str:
    if kind == "session_page":
        return f"/api/v1/sessions/{key}/attempts?limit=100"
    if kind == "commit_lookup":
        return f"/api/v1/attempts?commit_sha={key}"
    return f"/api/v1/deliveries/{key}"


def _sequential(port: int, requests: list[WireRequest]) -> Phase:
    return asyncio.run(closed_loop(port, requests, 1, 0.0, 600.0))


def _http_round(target: Target, keys: dict[str, list[Any]]) -> dict[str, Any]:
    port, figures = target.port, {}
    for kind in KINDS:
        requests = [WireRequest(get_request(_path(kind, k), port, TOKEN)) for k in keys[kind]]
        figures[kind] = measured(target, partial(_sequential, port, requests))
    return figures


def _verify(port: int, layout: bulk.Layout) -> bool:
    """The loaded ledger answers as designed: 100 attempts a session, 1 a commit, 5 a delivery."""
    sizes = {"session_page": 100, "commit_lookup": 1, "delivery_lookup": 5}
    keys = _keys(layout, 1, seed=99)
    for kind, size in sizes.items():
        status, body = asyncio.run(
            fetch(port, get_request(_path(kind, keys[kind][0]), port, TOKEN))
        )
        found = json.loads(body) if status == 200 else {}
        items = found.get("attempts" if kind == "delivery_lookup" else "items", [])
        if len(items) != min(size, layout.attempts):
            return False
    return True


def _timed(calls: list[Callable[[], object]]) -> dict[str, Any]:
    latencies = []
    for call in calls:
        started = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - started)
    return latency_ms(latencies)


def _store_round(store: SqlStore, keys: dict[str, list[Any]]) -> dict[str, Any]:
    """The store calls each route makes (one read transaction each), without HTTP or JSON."""
    readers: dict[str, Callable[[Any], object]] = {
        "session_page": lambda s: store.session_page(s, limit=100),
        "commit_lookup": store.commit_attempts,
        "delivery_lookup": lambda d: store.delivery_view("github", d),
    }
    return {kind: _timed([partial(readers[kind], k) for k in keys[kind]]) for kind in KINDS}


def _sql(engine: Engine, steps: list[tuple[str, Any]]) -> None:
    with engine.connect() as conn:
        for name, key in steps:
            conn.execute(text(SQL[name]), {"key": key}).all()


def _sql_commit(engine: Engine, sha: str) -> None:
    with engine.connect() as conn:
        rows = conn.execute(text(SQL["by_sha"]), {"key": sha}).all()
        for session_id in {row.session_id for row in rows}:
            conn.execute(text(SQL["session"]), {"key": session_id}).all()


def _sql_delivery(engine: Engine, delivery: str) -> None:
    with engine.connect() as conn:
        pk = conn.execute(text(SQL["delivery"]), {"key": delivery}).one().id
        push = conn.execute(text(SQL["push"]), {"key": pk}).one()
        conn.execute(text(SQL["carried"]), {"key": push.id}).all()
        rows = conn.execute(text(SQL["by_delivery"]), {"key": pk}).all()
        conn.execute(text(SQL["session"]), {"key": rows[0].session_id}).all()


def _sql_round(engine: Engine, keys: dict[str, list[Any]]) -> dict[str, Any]:
    readers: dict[str, Callable[[Any], None]] = {
        "session_page": lambda s: _sql(engine, [("session", s), ("page", s)]),
        "commit_lookup": lambda sha: _sql_commit(engine, sha),
        "delivery_lookup": lambda d: _sql_delivery(engine, d),
    }
    return {kind: _timed([partial(readers[kind], k) for k in keys[kind]]) for kind in KINDS}


def _in_process(database: Database, all_keys: list[dict[str, list[Any]]]) -> dict[str, Any]:
    """labledger's store and bare SQL on the same keys, each on an engine of its own."""
    store_engine = make_engine(database.url)
    sql_engine = make_engine(database.url, pool_pre_ping=False)
    try:
        store = SqlStore(store_engine)
        return {
            "store": combine([_store_round(store, keys) for keys in all_keys]),
            "sql": combine([_sql_round(sql_engine, keys) for keys in all_keys]),
        }
    finally:
        store_engine.dispose()
        sql_engine.dispose()


def read_benchmark(
    config: BenchConfig, databases: Databases, dialect: str, logs: Path
) -> dict[str, Any]:
    """Load `config.read_attempts` attempts, then time each kind of read in every layer."""
    database = databases.create(dialect, "reads")
    layout = bulk.Layout(config.read_attempts)
    all_keys = [_keys(layout, config.read_requests, seed) for seed in range(config.read_rounds)]
    try:
        migrate_ledger(database)
        figures: dict[str, Any] = {"attempts": config.read_attempts}
        figures["load_s"] = round(bulk.load(database, config.read_attempts), 1)
        env = labledger_env(database.url, logs)
        with running("labledger-reads", labledger_command, env, logs) as server:
            target = Target("labledger", server, database, databases)
            figures["verified"] = _verify(server.port, layout)
            figures["http"] = combine([_http_round(target, keys) for keys in all_keys])
            figures["peak_rss_mb"] = target.peak_rss_mb()
        return {**figures, **_in_process(database, all_keys)}
    finally:
        databases.drop(database)
