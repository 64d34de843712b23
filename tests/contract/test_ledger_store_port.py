"""The LedgerStore port (core/ports.py) and the core service over it, on every store: in
memory, SQLite and PostgreSQL. Only the port is used here, so a store that passes these keeps
the invariants the core relies on."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from labledger.core.errors import DeliveryConflict
from labledger.core.model import (
    Delivery,
    LabSession,
    Outcome,
    Push,
    RecordResult,
    SessionSpec,
)
from labledger.core.ports import LedgerStore
from labledger.core.service import plan_attempts, record_push_delivery
from labledger.forges import github
from tests.conftest import Ledger, PgDatabases, _pg_ledger, _sqlite_ledger
from tests.memory_store import MemoryStore
from tests.support import body_of, commit, headers_for, push_payload, session_spec

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@dataclass
class Port:
    """A store seen through its port, and the one thing the port does not offer: sessions."""

    kind: str
    store: LedgerStore
    open_session: Callable[[SessionSpec], LabSession]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def port(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    sqlite_template: Path,
    pg_databases: PgDatabases | None,
) -> Iterator[Port]:
    if request.param == "memory":
        memory = MemoryStore()
        yield Port("memory", memory, lambda spec: memory.create_session(spec, NOW))
        return
    if request.param == "sqlite":
        ledger = _sqlite_ledger(sqlite_template, tmp_path)
        yield sql_port(ledger)
        ledger.engine.dispose()
        return
    yield from (sql_port(ledger) for ledger in _pg_ledger(pg_databases))


def sql_port(ledger: Ledger) -> Port:
    store = ledger.store
    return Port(ledger.dialect, store, lambda spec: store.create_session(spec, "test", NOW))


def delivery_of(
    payload: dict[str, Any] | bytes,
    delivery_id: str,
    *,
    hook_id: str | None = "4242",
    received_at: datetime = NOW,
) -> tuple[Delivery, Push]:
    """The core values the webhook route hands the service for this payload."""
    body = payload if isinstance(payload, bytes) else body_of(payload)
    envelope = github.read_envelope(headers_for(body, delivery_id=delivery_id, hook_id=hook_id))
    return github.make_delivery(envelope, body, received_at), github.parse_github_push(body)


def record(
    port: Port, payload: dict[str, Any] | bytes, delivery_id: str, **kw: Any
) -> RecordResult:
    return record_push_delivery(port.store, *delivery_of(payload, delivery_id, **kw))


def test_a_push_records_one_attempt_per_commit_and_names_its_products(port: Port) -> None:
    """A recorded delivery answers its push and attempts; the store names the same products."""
    port.open_session(session_spec())
    result = record(port, push_payload([commit(), commit()]), "d-1")
    assert result.outcome is Outcome.RECORDED and len(result.attempt_ids) == 2
    stored = port.store.find_delivery("github", "d-1")
    assert stored is not None and stored.delivery_id == "d-1"
    assert port.store.delivery_products(stored.id) == (result.push_id, result.attempt_ids)


def test_a_redelivery_answers_as_the_first_and_adds_nothing(port: Port) -> None:
    """The unique delivery id decides: the same delivery again is a duplicate, same answer."""
    port.open_session(session_spec())
    payload = push_payload([commit()])
    first = record(port, payload, "d-again")
    again = record(port, payload, "d-again", received_at=NOW + timedelta(days=1))
    assert again.outcome is Outcome.DUPLICATE
    assert (again.push_id, again.attempt_ids) == (first.push_id, first.attempt_ids)
    stored = port.store.find_delivery("github", "d-again")
    assert stored is not None and stored.received_at == NOW


def test_same_delivery_id_same_hook_other_body_is_a_conflict(port: Port) -> None:
    """One hook's delivery id with another body is refused as a conflict, never recorded."""
    record(port, push_payload([commit()]), "d-conflict")
    with pytest.raises(DeliveryConflict):
        record(port, push_payload([commit()]), "d-conflict")


def test_same_delivery_id_from_another_hook_is_the_same_event(port: Port) -> None:
    """GitHub gives every hook of one event the same delivery id: another hook is a duplicate."""
    first = record(port, push_payload([commit()]), "d-hooks", hook_id="1")
    other = record(port, push_payload([commit()]), "d-hooks", hook_id="2")
    assert other.outcome is Outcome.DUPLICATE and other.push_id == first.push_id


def test_a_replayed_body_under_a_new_delivery_id_is_the_first_event(port: Port) -> None:
    """The unique body hash decides: a signed body sent again under another id adds nothing
    and rolls back the delivery row it began."""
    port.open_session(session_spec())
    body = body_of(push_payload([commit()]))
    first = record(port, body, "d-original")
    replay = record(port, body, "d-replay")
    assert replay.outcome is Outcome.DUPLICATE and replay.attempt_ids == first.attempt_ids
    original = port.store.find_delivery("github", "d-original")
    assert original is not None
    assert port.store.body_claim("github", original.body_sha256) == original.id
    assert port.store.find_delivery("github", "d-replay") is None


def test_a_commit_pushed_again_never_makes_a_second_attempt(port: Port) -> None:
    """UNIQUE(session, commit) holds across pushes: the second push records no attempt."""
    port.open_session(session_spec())
    shared = commit()
    first = record(port, push_payload([shared]), "d-first")
    second = record(port, push_payload([shared], ref="refs/heads/other"), "d-second")
    assert len(first.attempt_ids) == 1 and second.attempt_ids == ()
    assert second.no_attempt_reason == "commits already recorded"


def test_a_failed_transaction_leaves_nothing(port: Port) -> None:
    """Everything written through one transaction commits together or not at all."""
    delivery, _ = delivery_of(push_payload([commit()]), "d-rolled-back")
    with pytest.raises(RuntimeError), port.store.transaction() as tx:
        assert tx.insert_delivery(delivery) is not None
        raise RuntimeError("abort")
    assert port.store.find_delivery("github", "d-rolled-back") is None
    assert record(port, push_payload([commit()]), "d-rolled-back").outcome is Outcome.RECORDED


def test_insert_attempts_skips_held_pairs_and_answers_ledger_order(port: Port) -> None:
    """New attempts get ids in ledger order; a (session, commit) already held gets none."""
    session = port.open_session(session_spec())
    c1, c2 = commit(), commit()
    result = record(port, push_payload([c1]), "d-order")
    assert result.push_id is not None
    _, push = delivery_of(push_payload([c1, c2]), "unused")
    stored = port.store.find_delivery("github", "d-order")
    assert stored is not None
    wanted = plan_attempts(push, [session], result.push_id, stored.id, NOW)
    with port.store.transaction() as tx:
        ids = tx.insert_attempts(wanted)
    assert len(ids) == 1 and ids[0] > result.attempt_ids[0]


def test_recorded_pushes_come_back_in_ledger_order_with_their_bodies(port: Port) -> None:
    """The pushes of a repository come back oldest first, each with its raw body."""
    bodies = [body_of(push_payload([commit()])) for _ in range(3)]
    for n, body in enumerate(bodies):
        record(port, body, f"d-push-{n}")
    with port.store.transaction() as tx:
        pushes = tx.recorded_pushes("github", session_spec().repository_id)
        assert [p.body for p in pushes] == bodies
        assert [p.push_id for p in pushes] == sorted(p.push_id for p in pushes)
        assert tx.recorded_pushes("gitlab", session_spec().repository_id) == []


def test_a_session_opened_later_picks_up_the_pushes_it_takes(port: Port) -> None:
    """A session created after a push derives that push's attempts (invariant 11)."""
    early = record(port, push_payload([commit(), commit()]), "d-early")
    assert early.attempt_ids == ()
    port.open_session(session_spec())
    stored = port.store.find_delivery("github", "d-early")
    assert stored is not None
    push_id, attempt_ids = port.store.delivery_products(stored.id)
    assert push_id == early.push_id and len(attempt_ids) == 2
