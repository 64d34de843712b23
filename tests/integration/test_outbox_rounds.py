"""`SqlOutbox.due` reads, between its full reads, only what is new since its last round; it
answers as a read of the whole outbox would, on SQLite and PostgreSQL: events never tried,
retries and replays whose time has come, oldest first, whatever happened in between."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from labledger.storage.outbox import OutboxEvent, SqlOutbox
from labledger.storage.tables import outbox_events, outbox_states
from tests.conftest import Ledger

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _add_event(ledger: Ledger, event_id: int, subscriber: str = "grader") -> None:
    with ledger.engine.begin() as conn:
        conn.execute(
            outbox_events.insert().values(
                id=event_id,
                subscriber=subscriber,
                event_id=f"evt-{event_id}",
                event_type="attempt.recorded",
                payload={"n": event_id},
                created_at=T0,
            )
        )


def _add_state(ledger: Ledger, outbox_id: int, state: str, next_at: datetime | None) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(
            outbox_states.insert().values(
                outbox_id=outbox_id,
                state=state,
                attempt_no=1,
                next_attempt_at=next_at,
                recorded_at=T0,
            )
        )


def _model(ledger: Ledger, now: datetime, limit: int) -> list[tuple[int, str]]:
    """What is due, worked out in Python from every row of both tables."""
    with ledger.engine.connect() as conn:
        events = conn.execute(select(outbox_events.c.id)).scalars().all()
        states = conn.execute(select(outbox_states).order_by(outbox_states.c.id)).all()
    newest: dict[int, Any] = {}
    for row in states:
        newest[row.outbox_id] = row
    due = []
    for event_id in sorted(events):
        row = newest.get(event_id)
        if row is None:
            due.append((event_id, "new"))
        elif row.state in ("retry", "replay") and (row.next_attempt_at or now + DAY) <= now:
            due.append((event_id, row.state))
    return due[:limit]


def _seen(events: list[OutboxEvent]) -> list[tuple[int, str]]:
    return [(e.id, e.state) for e in events]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_rounds_answer_as_a_full_read_does(ledger: Ledger, seed: int) -> None:
    """Random events, outcomes, replays and times: each round of one long-lived outbox (which
    keeps a floor and reads two ids behind it) equals the answer worked out from all rows."""
    rng = random.Random(seed)
    clock = Clock()
    outbox = SqlOutbox(ledger.engine, trail=2, rescan_seconds=10**9, clock=clock)
    now, next_id, rounds, incremental = T0, 1, 0, 0
    for _ in range(160):
        move = rng.random()
        if move < 0.35 or next_id == 1:
            for _ in range(rng.randint(1, 4)):
                _add_event(ledger, next_id)
                next_id += 1
        elif move < 0.75:
            target = rng.randint(1, next_id - 1)
            state = rng.choice(["delivered", "delivered", "dead", "retry", "retry", "replay"])
            at = (
                None
                if state in ("delivered", "dead")
                else now + timedelta(seconds=rng.randint(-5, 5))
            )
            _add_state(ledger, target, state, rng.choice([at, at, None]) if at else None)
        else:
            now += timedelta(seconds=rng.randint(0, 4))
            limit = rng.choice([1, 3, 100])
            floor_before = outbox._seen.floor if outbox._seen else 0
            assert _seen(outbox.due(now, limit)) == _model(ledger, now, limit)
            rounds += 1
            incremental += floor_before > 0
    assert rounds > 20 and incremental > 10  # most rounds read above a floor


def test_a_replay_and_a_never_tried_event_below_the_floor_are_found(ledger: Ledger) -> None:
    """An event kept open far behind the floor (its subscriber is unknown, so it is never
    tried) stays due, and an operator's replay of a dead letter long settled is due again."""
    outbox = SqlOutbox(ledger.engine, trail=2, rescan_seconds=10**9, clock=Clock())
    for event_id in range(1, 31):
        _add_event(ledger, event_id)
    for event_id in range(2, 31):
        _add_state(ledger, event_id, "dead" if event_id == 3 else "delivered", None)
    assert _seen(outbox.due(T0)) == [(1, "new")]
    assert outbox._seen is not None and outbox._seen.floor == 28
    assert _seen(outbox.due(T0)) == [(1, "new")]
    _add_state(ledger, 3, "replay", T0)
    assert _seen(outbox.due(T0)) == [(1, "new"), (3, "replay")]
    _add_state(ledger, 1, "delivered", None)
    _add_state(ledger, 3, "delivered", None)
    assert outbox.due(T0) == []


def test_a_row_committed_far_behind_is_found_by_the_next_full_read(ledger: Ledger) -> None:
    """An event whose id lies more than the trail below the newest when it commits (a
    transaction that held its id that long) is found at the next full read, not lost."""
    clock = Clock()
    outbox = SqlOutbox(ledger.engine, trail=2, rescan_seconds=300, clock=clock)
    for event_id in [*range(1, 5), *range(20, 31)]:
        _add_event(ledger, event_id)
        _add_state(ledger, event_id, "delivered", None)
    assert outbox.due(T0) == []
    _add_event(ledger, 10)  # its id was handed out long before it committed
    clock.now = 299.0
    assert outbox.due(T0) == []  # between full reads it lies below the floor
    clock.now = 300.0
    due = outbox.due(T0)
    assert _seen(due) == [(10, "new")] and due[0].payload == {"n": 10}
