"""The database bound: the rows one delivery makes, written by the driver, no HTTP.

Every row is computed before the clock starts (parsing, compression, hashing); the measured
part is one transaction per delivery through SQLAlchemy Core on labledger's own engine
settings, with the caller's concurrency as threads sharing the engine's connection pool.
"""

from __future__ import annotations

import hashlib
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from bench.loadgen import FAILED, Phase
from bench.payloads import SignedPush
from labledger.core.model import Commit, Push
from labledger.forges.github import parse_github_push
from labledger.storage.engine import WRITE_OPTION, make_engine
from labledger.storage.tables import attempts, audit_events, deliveries, push_commits, pushes

RECORDED = 202


@dataclass(frozen=True, slots=True)
class PreparedDelivery:
    delivery: dict[str, Any]
    push: dict[str, Any]
    carried: list[dict[str, Any]]
    attempts: list[dict[str, Any]]
    audit: dict[str, Any]


def prepare(signed: SignedPush, session_id: int) -> PreparedDelivery:
    push = parse_github_push(signed.body)
    now = datetime.now(UTC)
    delivery = {
        "forge": "github", "delivery_id": signed.delivery_id, "hook_id": "4242",
        "event": "push", "received_at": now, "body_sha256": hashlib.sha256(signed.body).digest(),
        "body_size": len(signed.body), "body_zlib": zlib.compress(signed.body, 6),
    }  # fmt: skip
    carried = [
        {"position": i, "commit_sha": c.sha, "is_distinct": c.distinct}
        for i, c in enumerate(push.carried_commits())
    ]
    rows = [_attempt(c, session_id, push, now) for c in push.carried_commits()]
    audit = {
        "occurred_at": now, "actor": "github-hook:4242", "action": "delivery.recorded",
        "target_type": "delivery", "target_id": signed.delivery_id,
        "details": {"event": "push", "attempts": len(rows)},
    }  # fmt: skip
    return PreparedDelivery(delivery, _push(push), carried, rows, audit)


def _push(push: Push) -> dict[str, Any]:
    return {
        "forge": "github", "repository_id": push.repository_id,
        "repository_full_name": push.repository_full_name, "ref": push.ref,
        "before_sha": push.before, "after_sha": push.after, "created": push.created,
        "deleted": push.deleted, "forced": push.forced, "pusher_name": push.pusher.name,
        "pusher_email": push.pusher.email, "sender_login": push.sender.login,
        "sender_id": push.sender.id, "pushed_at": push.pushed_at,
        "commit_count": len(push.commits), "commit_list_complete": push.commit_list_complete,
    }  # fmt: skip


def _attempt(c: Commit, session_id: int, push: Push, now: datetime) -> dict[str, Any]:
    files = {"added": list(c.files.added), "modified": list(c.files.modified),
             "removed": list(c.files.removed)}  # fmt: skip
    return {
        "session_id": session_id, "commit_sha": c.sha, "tree_sha": c.tree_sha,
        "message": c.message, "author_name": c.author.name, "author_email": c.author.email,
        "author_username": c.author.username, "committer_name": c.committer.name,
        "committer_email": c.committer.email, "committer_username": c.committer.username,
        "claimed_timestamp": c.timestamp, "is_distinct": c.distinct, "branch": push.branch,
        "changed_files": files, "pushed_at": push.pushed_at, "received_at": now,
    }  # fmt: skip


def write(engine: Engine, item: PreparedDelivery) -> None:
    with engine.connect() as conn:
        conn = conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            delivery_pk = conn.execute(
                deliveries.insert().returning(deliveries.c.id), item.delivery
            ).scalar_one()
            push_id = conn.execute(
                pushes.insert().returning(pushes.c.id), {**item.push, "delivery_pk": delivery_pk}
            ).scalar_one()
            links = {"push_id": push_id, "delivery_pk": delivery_pk}
            conn.execute(push_commits.insert(), [{**c, "push_id": push_id} for c in item.carried])
            conn.execute(attempts.insert(), [{**a, **links} for a in item.attempts])
            conn.execute(audit_events.insert(), item.audit)


def closed_loop(
    url: str, items: Sequence[PreparedDelivery], concurrency: int, warmup_s: float, measure_s: float
) -> Phase:
    """`concurrency` threads writing deliveries back to back; the same windows as HTTP."""
    engine = make_engine(url)
    start = time.perf_counter()
    phase = Phase((start + warmup_s, start + warmup_s + measure_s))
    feed, lock = iter(items), threading.Lock()
    cpu = time.process_time()
    try:
        with ThreadPoolExecutor(concurrency) as pool:
            for done in [
                pool.submit(_worker, engine, feed, lock, phase) for _ in range(concurrency)
            ]:
                done.result()
    finally:
        engine.dispose()
    phase.generator_cpu_s = time.process_time() - cpu  # the writer's own CPU, here
    return phase


def _worker(
    engine: Engine, feed: Iterator[PreparedDelivery], lock: threading.Lock, phase: Phase
) -> None:
    while (started := time.perf_counter()) < phase.window[1]:
        with lock:
            item = next(feed, None)
        if item is None:
            return
        try:
            write(engine, item)
            status = RECORDED
        except SQLAlchemyError:
            status = FAILED
        with lock:
            phase.record(started, time.perf_counter(), status, len(item.attempts))
