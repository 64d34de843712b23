"""Re-deriving ledger rows from the evidence they were made from (issue 21, item 4).

The Merkle log proves that a row is what was logged, not that it was made by labledger: the
application's database role can INSERT a row and queue it, and the integrator signs it like
any other. So `verify` also asks of each row what labledger itself would have written. A push
and its attempts are what the parser and `plan_attempts` make of the stored raw body; a
session and a deadline change come with the audit event the API writes in the same
transaction. Pure: the storage adapter hands in rows as mappings of column names.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from labledger.core.leaves import LEAF_FIELDS
from labledger.core.model import Account, Commit, Identity, LabSession, NewAttempt, Push
from labledger.core.service import plan_attempts

Row = Mapping[str, Any]
# The columns an attempt takes from its push and delivery, not from the commit's own claims:
# all that can be checked once the raw body is gone.
FROM_PUSH = (
    "session_id",
    "commit_sha",
    "is_distinct",
    "branch",
    "push_id",
    "delivery_pk",
    "pushed_at",
    "received_at",
)


def push_row(push: Push) -> dict[str, Any]:
    """The columns of a push row taken from `push`: the one mapping the ingest path writes
    (with the delivery, forge and salt the store adds) and `verify` derives again."""
    return {
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
    }


def carried_rows(push: Push) -> list[dict[str, Any]]:
    """The push_commits rows of `push` (after its push id): every commit it carried, in order."""
    return [
        {"position": i, "commit_sha": c.sha, "is_distinct": c.distinct}
        for i, c in enumerate(push.carried_commits())
    ]


def push_columns(push: Push) -> dict[str, Any]:
    """A push row as `verify` reads it back: its columns and the commits it carried."""
    return {**push_row(push), "commits": [[c.sha, c.distinct] for c in push.carried_commits()]}


def attempt_columns(attempt: NewAttempt) -> dict[str, Any]:
    """The columns of an attempt row taken from `attempt`: the one mapping the ingest path
    writes (with the salt the store adds) and `verify` derives again."""
    c = attempt.commit
    return {
        "session_id": attempt.session_id,
        "commit_sha": c.sha,
        "tree_sha": c.tree_sha,
        "message": c.message,
        "author_name": c.author.name,
        "author_email": c.author.email,
        "author_username": c.author.username,
        "committer_name": c.committer.name,
        "committer_email": c.committer.email,
        "committer_username": c.committer.username,
        "claimed_timestamp": c.timestamp,
        "is_distinct": c.distinct,
        "branch": attempt.branch,
        "changed_files": {
            "added": list(c.files.added),
            "modified": list(c.files.modified),
            "removed": list(c.files.removed),
        },
        "push_id": attempt.push_id,
        "delivery_pk": attempt.delivery_pk,
        "pushed_at": attempt.pushed_at,
        "received_at": attempt.received_at,
    }


def differing(kind: str, stored: Row, derived: Mapping[str, Any]) -> tuple[str, ...]:
    """The columns where `stored` is not what was derived. An erased row's personal fields
    are blank on purpose (its leaf keeps their commitment), so they are not compared."""
    erased = set(LEAF_FIELDS[kind][1]) if stored.get("personal_sha256") is not None else set()
    return tuple(
        name for name, value in derived.items() if name not in erased and stored[name] != value
    )


def push_from_row(push: Row) -> Push:
    """What a push row still says once its raw body is gone: no commit's own claims."""
    commits = tuple(
        Commit(sha, None, "", Identity(None, None), Identity(None, None), None, distinct)
        for sha, distinct in push["commits"]
    )
    return Push(
        repository_id=push["repository_id"],
        repository_full_name=push["repository_full_name"],
        ref=push["ref"],
        before=push["before_sha"],
        after=push["after_sha"],
        created=push["created"],
        deleted=push["deleted"],
        forced=push["forced"],
        pusher=Identity(push["pusher_name"], push["pusher_email"]),
        sender=Account(push["sender_login"], push["sender_id"]),
        pushed_at=push["pushed_at"],
        commits=commits,
        head_commit=None,
    )


def session_as_it_was(
    session: LabSession, changes: Sequence[Row]
) -> list[tuple[LabSession, datetime]]:
    """The session under each deadline it ever had, with the moment it took that deadline:
    an attempt was planned under one of them, on receipt or picked up at that moment."""
    return [(session, session.created_at)] + [
        (
            replace(
                session, spec=replace(session.spec, due_at=c["due_at"], closes_at=c["closes_at"])
            ),
            c["changed_at"],
        )
        for c in changes
    ]


def first_plans(
    push: Push,
    sessions: Iterable[tuple[LabSession, datetime]],
    push_id: int,
    delivery_pk: int,
    received_at: datetime,
) -> list[dict[str, NewAttempt]]:
    """For each of `sessions` (one session under each of its deadlines), what `plan_attempts`
    makes of the push, by commit: the first plan of a commit, as the unique key keeps the first.
    Each is planned twice: on receipt, and as picked up when the session took that deadline
    (a session created or widened after the push, invariant 11)."""
    plans = []
    for session, took_it_at in sessions:
        for picked_up_at in (None, took_it_at):
            first: dict[str, NewAttempt] = {}
            planned = plan_attempts(
                push, [session], push_id, delivery_pk, received_at, picked_up_at=picked_up_at
            )
            for attempt in planned:
                first.setdefault(attempt.commit.sha, attempt)
            plans.append(first)
    return plans


def attempt_mismatch(
    attempt: Row, plans: Iterable[Mapping[str, NewAttempt]], columns: Sequence[str] | None = None
) -> tuple[str, ...] | None:
    """How `attempt` differs from its plan under the deadline it matches best (None: it
    matches one); `columns` limits the comparison. `("commit_sha",)` when no plan holds it."""
    best: tuple[str, ...] | None = ("commit_sha",)
    for plan in plans:
        planned = plan.get(attempt["commit_sha"])
        if planned is None:
            continue
        derived = attempt_columns(planned)
        if columns is not None:
            derived = {name: derived[name] for name in columns}
        found = differing("attempt", attempt, derived)
        if not found:
            return None
        best = found
    return best


def companion_mismatch(expected: Mapping[str, Any], audit: Row | None) -> tuple[str, ...]:
    """The fields in which the audit event `audit` is not the companion expected of it
    (`("audit",)` when there is none). `expected` maps `occurred_at`, `actor` and detail keys
    (`details.NAME`) to values; times in details are ISO strings compared as times."""
    if audit is None:
        return ("audit",)
    details = audit["details"] if isinstance(audit["details"], Mapping) else {}
    wrong = []
    for name, value in expected.items():
        held = details.get(name[8:]) if name.startswith("details.") else audit[name]
        if not _same(held, value):
            wrong.append(name)
    return tuple(wrong)


def _same(held: Any, value: Any) -> bool:
    if isinstance(value, datetime) and isinstance(held, str):
        try:
            return datetime.fromisoformat(held) == value
        except ValueError:
            return False
    return bool(held == value)
