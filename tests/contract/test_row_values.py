"""A delivery's rows worked out before the write lock (storage/row_values.py) store what the
same rows worked out inside the transaction store, and the work is done outside the lock."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from labledger.core import service
from labledger.core.model import Delivery
from labledger.forges.github import parse_github_push
from labledger.storage import row_values
from labledger.storage.driver_writes import Binder
from labledger.storage.row_values import FILLED_IN
from tests.conftest import Ledger
from tests.support import body_of, commit, push_payload, session_spec

PARIS = timezone(timedelta(hours=1))
RECEIVED = datetime(2026, 11, 25, 13, 0, 7, 123456, tzinfo=PARIS)


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.psycopg.dialect()])
def test_columns_filled_in_the_transaction_need_no_bind_processor(dialect: object) -> None:
    """The ids and salts are put in place unbound, so their types must not convert them."""
    for shape, columns in FILLED_IN.items():
        binder = shape.binder(dialect)  # type: ignore[arg-type]
        binds = dict(zip(binder.columns, binder.binds, strict=True))
        assert {c: binds[c] for c in columns} == dict.fromkeys(columns)


def _delivery(name: str) -> tuple[Delivery, bytes]:
    commits = [
        commit(f"{name}-1", added=["docs/ünï ✓.md"], removed=["old.txt"], tree_id=None),
        commit(f"{name}-2", distinct=False, timestamp=None, message="fix\n\tüñí 🎓"),
    ]
    body = body_of(push_payload(commits, ref="refs/heads/feature/ß"))
    delivery = Delivery(
        "github", f"rows-{name}", "4242", "push", body, hashlib.sha256(body).digest(), RECEIVED
    )
    return delivery, body


@pytest.mark.parametrize("ahead", [True, False], ids=["worked-out-ahead", "in-the-transaction"])
def test_a_push_stores_every_value_whether_its_rows_were_worked_out_ahead(
    ledger: Ledger, ahead: bool
) -> None:
    """Every column of the delivery, the push, its commit list and its attempts reads back as
    the push said, on both paths (the webhook path gives `ahead`; other writers may not)."""
    session_id = ledger.store.create_session(
        session_spec(branch_glob="feature/*"), "test", RECEIVED
    ).id
    delivery, body = _delivery("ahead" if ahead else "inline")
    push = parse_github_push(body)
    with ledger.store.transaction(ahead=(delivery, push) if ahead else None) as tx:
        result = service._record_new(tx, delivery, push)
    assert len(result.attempt_ids) == 2

    report = ledger.store.delivery_report("github", delivery.delivery_id)
    stored = report.delivery
    assert (stored.hook_id, stored.event, stored.body_sha256) == (
        "4242",
        "push",
        delivery.body_sha256,
    )
    assert stored.received_at == RECEIVED
    assert ledger.store.raw_body("github", delivery.delivery_id) == body
    assert report.push is not None
    p = report.push
    assert (p.repository_id, p.repository_full_name, p.ref) == (
        push.repository_id, push.repository_full_name, push.ref,
    )  # fmt: skip
    assert (p.before, p.after, p.created, p.deleted, p.forced) == (
        push.before, push.after, push.created, push.deleted, push.forced,
    )  # fmt: skip
    assert (p.pusher, p.sender, p.pushed_at) == (push.pusher, push.sender, push.pushed_at)
    assert [a.commit for a in report.attempts] == list(push.carried_commits())
    for attempt in report.attempts:
        assert (attempt.session_id, attempt.branch, attempt.push_id) == (
            session_id,
            "feature/ß",
            p.id,
        )
        assert (attempt.pushed_at, attempt.received_at) == (push.pushed_at, RECEIVED)
    record = ledger.store.get_attempt(result.attempt_ids[0])
    assert record.push.commit_shas == tuple(c.sha for c in push.carried_commits())


def test_the_rows_are_worked_out_before_the_write_lock(
    sqlite_ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Compressing the body and binding the rows happen before this process's writers' lock
    is taken, so the deliveries queued behind a writer do not wait for that work."""
    lock = sqlite_ledger.store._write_lock
    compressed: list[bool] = []
    bound: list[tuple[str, bool]] = []
    compress, values = zlib.compress, Binder.values

    def compress_noting(data: bytes, /, level: int = -1) -> bytes:
        compressed.append(lock._is_owned())
        return compress(data, level)

    def values_noting(self: Binder, row: Mapping[str, object]) -> tuple[object, ...]:
        bound.append((self.columns[0], lock._is_owned()))
        return values(self, row)

    monkeypatch.setattr(zlib, "compress", compress_noting)
    monkeypatch.setattr(Binder, "values", values_noting)
    sqlite_ledger.store.create_session(session_spec(branch_glob="feature/*"), "test", RECEIVED)
    delivery, body = _delivery("lock")
    bound.clear()
    service.record_push_delivery(sqlite_ledger.store, delivery, parse_github_push(body))
    assert compressed == [False]
    # The delivery, the push, its two commits' list entries and its two attempts, before the
    # lock; inside it only the audit event and the log queue's rows (one an entry).
    before = [column for column, held in bound if not held]
    assert before == ["forge", "delivery_pk", "push_id", "push_id", "session_id", "session_id"]
    inside = sorted(column for column, held in bound if held)
    assert inside == ["entry_type"] * 5 + ["occurred_at"]


def test_salts_are_fresh_and_of_their_size() -> None:
    made = row_values.salts(5)
    assert [len(s) for s in made] == [row_values.SALT_BYTES] * 5
    assert len(set(made)) == 5
    assert row_values.salts(0) == []
