"""A delivery's rows as the driver takes them, worked out before the write lock where they can be.

On SQLite the writers of one process take turns (engine.writer_lock): whatever a writer does
while it holds the lock, every delivery queued behind it waits for. Compressing the body,
building the rows and running their values through the column types' bind processors (times,
JSON, booleans) need no lock, so `SqlStore.transaction(ahead=(delivery, push))` has them done
first, and inside the transaction the writer adds only what the database hands out (the ids
the rows refer to) and the attempts' salts. What was not worked out ahead (other objects, or
no `ahead` at all) is worked out when it is written, by the same functions.
"""

from __future__ import annotations

import os
import zlib
from datetime import datetime
from typing import Any

from sqlalchemy import Dialect

from labledger.core.model import Commit, Delivery, NewAttempt, Push
from labledger.storage.driver_writes import InsertShape
from labledger.storage.tables import attempts, deliveries, push_commits, pushes

# zlib's default level: a 10.7 KB push body in about 3 KB.
BODY_ZLIB_LEVEL = 6
SALT_BYTES = 16

# The ingest path's INSERTs, run on the driver (storage/driver_writes.py): the columns each
# writes, those the transaction fills in first.
DELIVERY = InsertShape(
    deliveries,
    ("forge", "delivery_id", "hook_id", "event", "received_at", "body_sha256", "body_size",
     "body_zlib"),
    conflict_keys=("forge", "delivery_id"),
    returning=("id",),
)  # fmt: skip
PUSH = InsertShape(
    pushes,
    ("delivery_pk", "forge", "repository_id", "repository_full_name", "ref", "before_sha",
     "after_sha", "created", "deleted", "forced", "pusher_name", "pusher_email", "sender_login",
     "sender_id", "pushed_at", "commit_count", "commit_list_complete", "personal_salt"),
    returning=("id",),
)  # fmt: skip
PUSH_COMMITS = InsertShape(push_commits, ("push_id", "position", "commit_sha", "is_distinct"))
# Several rows in one INSERT: those UNIQUE(session_id, commit_sha) already holds are skipped.
ATTEMPTS = InsertShape(
    attempts,
    ("session_id", "push_id", "delivery_pk", "commit_sha", "tree_sha", "message", "author_name",
     "author_email", "author_username", "committer_name", "committer_email",
     "committer_username", "claimed_timestamp", "is_distinct", "branch", "changed_files",
     "pushed_at", "received_at", "personal_salt"),
    conflict_keys=("session_id", "commit_sha"),
    returning=("id", "session_id", "commit_sha"),
)  # fmt: skip
# The columns of each that the transaction fills in (the rest are worked out ahead).
FILLED_IN = {
    DELIVERY: (),
    PUSH: ("delivery_pk",),
    PUSH_COMMITS: ("push_id",),
    ATTEMPTS: ("session_id", "push_id", "delivery_pk", "personal_salt"),
}

Values = tuple[Any, ...]


class RowValues:
    """The bound values of the ingest path's rows, each worked out once per object.

    Kept by object identity for one transaction: each entry holds its object, so no id is
    reused while the entry exists. The columns the transaction fills in (FILLED_IN) come
    first in each shape, but for the attempts' salt, which comes last. None of them has a bind
    processor on either database (a contract test checks), so putting their values in place
    unbound stores what binding them would.
    """

    def __init__(self, dialect: Dialect) -> None:
        self._delivery = DELIVERY.binder(dialect)
        self._push = PUSH.binder(dialect)
        self._push_commit = PUSH_COMMITS.binder(dialect)
        self._attempt = ATTEMPTS.binder(dialect)
        self._deliveries: dict[int, tuple[Delivery, Values]] = {}
        self._pushes: dict[tuple[int, str], tuple[Push, Values, list[Values]]] = {}
        self._commits: dict[tuple[int, str, datetime | None, datetime], tuple[Commit, Values]] = {}

    def warm(self, delivery: Delivery, push: Push) -> None:
        """Work out every row `core.service` will write for this delivery and push."""
        self.delivery(delivery)
        self.push(delivery.forge, push)
        if push.branch is not None:
            for commit in push.carried_commits():
                self._commit(commit, push.branch, push.pushed_at, delivery.received_at)

    def delivery(self, delivery: Delivery) -> Values:
        """DELIVERY's values, all of them."""
        found = self._deliveries.get(id(delivery))
        if found is not None and found[0] is delivery:
            return found[1]
        values = self._delivery.values(
            {
                "forge": delivery.forge,
                "delivery_id": delivery.delivery_id,
                "hook_id": delivery.hook_id,
                "event": delivery.event,
                "received_at": delivery.received_at,
                "body_sha256": delivery.body_sha256,
                "body_size": len(delivery.body),
                "body_zlib": zlib.compress(delivery.body, BODY_ZLIB_LEVEL),
            }
        )
        self._deliveries[id(delivery)] = (delivery, values)
        return values

    def push(self, forge: str, push: Push) -> tuple[Values, list[Values]]:
        """PUSH's values after `delivery_pk`, and PUSH_COMMITS' after `push_id`, one a commit."""
        found = self._pushes.get((id(push), forge))
        if found is not None and found[0] is push:
            return found[1], found[2]
        row = self._push.values(
            {
                "delivery_pk": None,
                "forge": forge,
                "repository_id": push.repository_id,
                "repository_full_name": push.repository_full_name,
                "ref": push.ref,
                "before_sha": push.before,
                "after_sha": push.after,
                "created": push.created,
                "deleted": push.deleted,
                "forced": push.forced,
                "pusher_name": push.pusher.name,
                "pusher_email": push.pusher.email,
                "sender_login": push.sender.login,
                "sender_id": push.sender.id,
                "pushed_at": push.pushed_at,
                "commit_count": len(push.commits),
                "commit_list_complete": push.commit_list_complete,
                "personal_salt": os.urandom(SALT_BYTES),
            }
        )[1:]
        carried = [
            self._push_commit.values(
                {"push_id": None, "position": i, "commit_sha": c.sha, "is_distinct": c.distinct}
            )[1:]
            for i, c in enumerate(push.carried_commits())
        ]
        self._pushes[(id(push), forge)] = (push, row, carried)
        return row, carried

    def attempt(self, attempt: NewAttempt) -> Values:
        """ATTEMPTS' values between the three ids and the salt."""
        return self._commit(attempt.commit, attempt.branch, attempt.pushed_at, attempt.received_at)

    def _commit(
        self, commit: Commit, branch: str, pushed_at: datetime | None, received_at: datetime
    ) -> Values:
        key = (id(commit), branch, pushed_at, received_at)
        found = self._commits.get(key)
        if found is not None and found[0] is commit:
            return found[1]
        values = self._attempt.values(
            {
                "session_id": None,
                "push_id": None,
                "delivery_pk": None,
                "commit_sha": commit.sha,
                "tree_sha": commit.tree_sha,
                "message": commit.message,
                "author_name": commit.author.name,
                "author_email": commit.author.email,
                "author_username": commit.author.username,
                "committer_name": commit.committer.name,
                "committer_email": commit.committer.email,
                "committer_username": commit.committer.username,
                "claimed_timestamp": commit.timestamp,
                "is_distinct": commit.distinct,
                "branch": branch,
                "changed_files": {
                    "added": list(commit.files.added),
                    "modified": list(commit.files.modified),
                    "removed": list(commit.files.removed),
                },
                "pushed_at": pushed_at,
                "received_at": received_at,
                "personal_salt": None,
            }
        )[3:-1]
        self._commits[key] = (commit, values)
        return values


def salts(count: int) -> list[bytes]:
    """`count` fresh salts from one read of the system's random source."""
    pool = os.urandom(SALT_BYTES * count)
    return [pool[i : i + SALT_BYTES] for i in range(0, len(pool), SALT_BYTES)]
