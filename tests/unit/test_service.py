"""The core service (core/service.py) over the in-memory store: recording rules without SQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from labledger.core.errors import DeliveryConflict
from labledger.core.model import Outcome, RecordResult
from labledger.core.service import plan_attempts, record_push_delivery
from labledger.forges import github
from tests.memory_store import MemoryStore
from tests.support import body_of, commit, headers_for, push_payload, session_spec

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
PUSHED_AT = datetime.fromtimestamp(1_764_000_000, UTC)


def record(
    store: MemoryStore,
    payload: dict[str, Any] | bytes,
    delivery_id: str = "d-1",
    hook_id: str | None = "4242",
    received_at: datetime = NOW,
) -> RecordResult:
    body = payload if isinstance(payload, bytes) else body_of(payload)
    envelope = github.read_envelope(headers_for(body, delivery_id=delivery_id, hook_id=hook_id))
    delivery = github.make_delivery(envelope, body, received_at)
    return record_push_delivery(store, delivery, github.parse_github_push(body))


def actions(store: MemoryStore) -> list[str]:
    return [event.action for event in store.tables.audit]


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def test_each_commit_becomes_an_attempt_of_each_session_that_takes_it(store: MemoryStore) -> None:
    """Two matching sessions and two commits make four attempts, session by session."""
    first = store.create_session(session_spec(subject_id="a"), NOW)
    second = store.create_session(session_spec(subject_id="b"), NOW)
    c1, c2 = commit(), commit()
    result = record(store, push_payload([c1, c2]))
    assert result.outcome is Outcome.RECORDED and result.no_attempt_reason is None
    made = [(a.session_id, a.commit.sha) for _, a in store.tables.attempts]
    assert made == [(s.id, c["id"]) for s in (first, second) for c in (c1, c2)]
    assert actions(store) == ["delivery.recorded"]
    assert store.tables.audit[0].details["attempts"] == 4


@pytest.mark.parametrize(
    ("payload", "spec", "reason"),
    [
        (push_payload([commit()], ref="refs/tags/v1"), {}, "not a branch: refs/tags/v1"),
        (push_payload([], deleted=True), {}, "branch deleted"),
        (push_payload([commit()]), {"repository_id": 1}, "no session for repository"),
        (push_payload([commit()], ref="refs/heads/dev"), {"branch_glob": "main"}, "branch not"),
        (push_payload([commit()]), {"closes_at": PUSHED_AT - timedelta(days=1)}, "outside"),
        (push_payload([]), {}, "no commits"),
    ],
    ids=["tag", "deleted", "no-session", "other-branch", "closed", "empty"],
)
def test_a_push_without_attempts_says_why(
    store: MemoryStore, payload: dict[str, Any], spec: dict[str, Any], reason: str
) -> None:
    """A recorded push that yields no attempt carries the reason a teacher can act on."""
    store.create_session(session_spec(**spec), NOW)
    result = record(store, payload)
    assert result.outcome is Outcome.RECORDED and result.attempt_ids == ()
    assert result.no_attempt_reason is not None and result.no_attempt_reason.startswith(reason)
    assert store.tables.audit[-1].details["no_attempt_reason"] == result.no_attempt_reason


def test_lateness_is_judged_on_the_forge_push_time_not_the_receipt(store: MemoryStore) -> None:
    """A push the forge timed inside the window counts even when received after it closed."""
    store.create_session(session_spec(closes_at=PUSHED_AT + timedelta(minutes=1)), NOW)
    result = record(store, push_payload([commit()]), received_at=PUSHED_AT + timedelta(days=3))
    assert len(result.attempt_ids) == 1


def test_a_redelivery_is_answered_from_the_store_and_audited(store: MemoryStore) -> None:
    """The same delivery again writes only a `delivery.duplicate` note and answers as before."""
    store.create_session(session_spec(), NOW)
    payload = push_payload([commit()])
    first = record(store, payload)
    again = record(store, payload, received_at=NOW + timedelta(hours=1))
    assert again == RecordResult(Outcome.DUPLICATE, "d-1", first.push_id, first.attempt_ids)
    assert actions(store) == ["delivery.recorded", "delivery.duplicate"]
    assert len(store.tables.deliveries) == len(store.tables.pushes) == 1


def test_a_conflicting_body_is_refused_but_its_audit_note_stays(store: MemoryStore) -> None:
    """A conflict raises with both hashes, after committing its `delivery.conflict` note."""
    record(store, push_payload([commit()]))
    with pytest.raises(DeliveryConflict) as raised:
        record(store, push_payload([commit()]))
    assert raised.value.stored_sha256 != raised.value.received_sha256
    assert actions(store) == ["delivery.recorded", "delivery.conflict"]
    assert len(store.tables.deliveries) == 1


def test_a_replayed_body_rolls_back_its_new_delivery(store: MemoryStore) -> None:
    """A body recorded before under another delivery id leaves no second delivery row."""
    body = body_of(push_payload([commit()]))
    first = record(store, body, "d-first")
    replay = record(store, body, "d-replay")
    assert replay.outcome is Outcome.DUPLICATE and replay.push_id == first.push_id
    assert [d.delivery_id for d, _ in store.tables.deliveries] == ["d-first"]
    assert actions(store) == ["delivery.recorded", "delivery.replay"]


def test_a_session_opened_later_picks_up_attempts_entering_the_log_now(
    store: MemoryStore,
) -> None:
    """Picked-up attempts keep the push's trusted time and enter the log when picked up."""
    record(store, push_payload([commit()]), received_at=NOW)
    later = NOW + timedelta(days=2)
    store.create_session(session_spec(), later)
    [(_, attempt)] = store.tables.attempts
    assert (attempt.pushed_at, attempt.received_at) == (PUSHED_AT, later)


def test_plan_attempts_uses_the_receipt_time_when_the_forge_gave_none(
    store: MemoryStore,
) -> None:
    """Without a forge push time, the receipt is the trusted time for the window."""
    session = store.create_session(session_spec(closes_at=NOW - timedelta(days=1)), NOW)
    push = github.parse_github_push(body_of(push_payload([commit()], pushed_at=None)))
    assert plan_attempts(push, [session], 1, 1, NOW) == []
    assert len(plan_attempts(push, [session], 1, 1, NOW - timedelta(days=2))) == 1
