"""The notification outbox in SQL: due events, their append-only delivery states, dead letters.

`outbox_events` is written by the ledger's own transactions (`SqlWriter._announce`); here the
dispatcher reads what is due and appends one `outbox_states` row per outcome. An event's state
is its newest state row; no row means "new". Nothing is updated or deleted, so the app role
needs only SELECT and INSERT, and the history of every delivery attempt stays readable.

Finding what is due must not cost a read of the whole outbox every round: a semester can leave
millions of delivered events behind. So `SqlOutbox.due` remembers, between rounds, a floor
below which every event was delivered or dead (but for the few it keeps as still open), and
reads only the events above it, the open ones, and those that a state row written since (an
operator's replay) concerns. The newest `TRAIL` ids of each are read again every round, as
PostgreSQL hands out ids before their rows commit; a row committed later still than that is
found by the full read that `due` makes every `RESCAN_SECONDS` (and at its first call).
"""

from __future__ import annotations

import fcntl
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, or_, select

from labledger.core.errors import NotFound
from labledger.storage.engine import WRITE_OPTION, translate_db_errors, writer_lock
from labledger.storage.leaf_rows import IN_CHUNK
from labledger.storage.tables import outbox_events, outbox_states

# Any constant works; it names "the dispatcher" among PostgreSQL advisory locks.
DISPATCHER_LOCK = 0x4C414244  # "LABD"
RESCAN_SECONDS = 300.0  # `due` reads the whole outbox this often, and otherwise what is new
TRAIL = 1000  # the newest event and state ids `due` reads again at every round
_SETTLED = ("delivered", "dead")


def new_event_id(kind: str, entry_id: int) -> str:
    """The `webhook-id` of a new event: `evt_<kind>_<entry id>_<random>`.

    Entry ids start again at 1 in every ledger and after every rebuild of one; a receiver that
    de-duplicates by webhook-id would drop a second ledger's `evt_attempt_1` as already seen.
    The random part keeps ids apart across ledgers; an event keeps its id for every resend,
    since the id is stored with the event."""
    return f"evt_{kind}_{entry_id}_{secrets.token_hex(12)}"


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    id: int
    subscriber: str
    event_id: str
    event_type: str
    payload: dict[str, Any]
    created_at: datetime
    state: str  # new | retry | replay | delivered | dead
    attempts: int  # delivery attempts since the event was created or last replayed
    next_attempt_at: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class _Seen:
    """What a round of `due` found: every event with an id up to `floor` was delivered or
    dead, but for those in `open`, as far as the state rows up to `states` tell."""

    floor: int
    open: frozenset[int]
    states: int
    read_all_at: float  # when the last full read began (the monotonic clock)


class SqlOutbox:
    def __init__(
        self,
        engine: Engine,
        *,
        rescan_seconds: float = RESCAN_SECONDS,
        trail: int = TRAIL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self._rescan_seconds = rescan_seconds
        self._trail = trail
        self._clock = clock
        self._seen: _Seen | None = None

    @contextmanager
    def _conn(self, write: bool = False) -> Iterator[Connection]:
        lock = writer_lock(self.engine) if write else nullcontext()
        with lock, translate_db_errors(), self.engine.connect() as conn:
            if write:
                conn = conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    def due(self, now: datetime, limit: int = 100) -> list[OutboxEvent]:
        """Events never tried, or waiting for a retry or replay whose time has come, oldest
        first; besides the open ones it reads only what is new since the last round."""
        seen = self._seen
        if seen is None or self._clock() - seen.read_all_at >= self._rescan_seconds:
            seen = _Seen(0, frozenset(), 0, self._clock())  # read everything this round
        with self._conn() as conn:
            newest_state = conn.execute(select(func.max(outbox_states.c.id))).scalar() or 0
            newest_event = conn.execute(select(func.max(outbox_events.c.id))).scalar() or 0
            # states written since (a replay, another process's round) by key range alone
            since = select(outbox_states.c.outbox_id).where(
                outbox_states.c.id > seen.states - self._trail
            )
            touched = (i for i in conn.execute(since).scalars() if i <= seen.floor)
            below = sorted(seen.open.union(touched))
            every = seen.floor == 0 and self.engine.dialect.name == "postgresql"
            above = _unsettled(outbox_events.c.id > seen.floor, every)
            unsettled = list(conn.execute(above))
            for at in range(0, len(below), IN_CHUNK):
                part = outbox_events.c.id.in_(below[at : at + IN_CHUNK])
                unsettled += conn.execute(_unsettled(part))
            unsettled.sort(key=lambda row: row.id)
            wanted = [row.id for row in unsettled if _is_due(row, now)][:limit]
            found = (
                conn.execute(_with_state().where(outbox_events.c.id.in_(wanted))) if wanted else ()
            )
            events = sorted(map(_event, found), key=lambda e: e.id)
        floor = max(seen.floor, newest_event - self._trail)
        still_open = frozenset(row.id for row in unsettled if row.id <= floor)
        self._seen = _Seen(floor, still_open, newest_state, seen.read_all_at)
        return events

    def in_state(self, state: str, limit: int = 1000) -> list[OutboxEvent]:
        with self._conn() as conn:
            rows = conn.execute(
                _with_state(every=True)
                .where(outbox_states.c.state == state)
                .order_by(outbox_events.c.id)
                .limit(limit)
            )
            return [_event(r) for r in rows]

    def get(self, outbox_id: int) -> OutboxEvent:
        with self._conn() as conn:
            row = conn.execute(_with_state().where(outbox_events.c.id == outbox_id)).one_or_none()
        if row is None:
            raise NotFound("outbox event", outbox_id)
        return _event(row)

    def append_state(
        self,
        outbox_id: int,
        state: str,
        attempt_no: int,
        now: datetime,
        *,
        next_attempt_at: datetime | None = None,
        status_code: int | None = None,
        error: str | None = None,
    ) -> None:
        with self._conn(write=True) as conn:
            conn.execute(
                outbox_states.insert().values(
                    outbox_id=outbox_id,
                    state=state,
                    attempt_no=attempt_no,
                    next_attempt_at=next_attempt_at,
                    status_code=status_code,
                    error=error[:2000] if error else None,
                    recorded_at=now,
                )
            )

    def history(self, outbox_id: int) -> list[dict[str, Any]]:
        with self._conn() as conn:
            rows = conn.execute(
                select(outbox_states)
                .where(outbox_states.c.outbox_id == outbox_id)
                .order_by(outbox_states.c.id)
            )
            return [dict(r._mapping) for r in rows]

    @contextmanager
    def exclusive(self) -> Iterator[bool]:
        """One dispatcher at a time per database; the others skip the round.

        Without it two `serve` processes would both send each due event; the receiver would
        still see one webhook-id, but twice. A lock held while sending keeps duplicates to the
        crash-and-retry case: a session-level advisory lock on PostgreSQL; on SQLite an
        advisory lock on a file beside the database, which the system releases when its
        process ends however it ends.
        """
        if self.engine.dialect.name != "postgresql":
            with _file_lock(self.engine.url.database) as got:
                yield got
            return
        with translate_db_errors(), self.engine.connect() as conn:
            got = bool(conn.execute(select(func.pg_try_advisory_lock(DISPATCHER_LOCK))).scalar())
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(select(func.pg_advisory_unlock(DISPATCHER_LOCK)))
                    conn.commit()


@contextmanager
def _file_lock(database: str | None) -> Iterator[bool]:
    if not database or database == ":memory:":
        yield True  # a private database: no other process can dispatch from it
        return
    with open(f"{database}.dispatch-lock", "ab") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_due(row: Any, now: datetime) -> bool:
    if row.state is None:  # new: never tried
        return True
    waiting = row.state in ("retry", "replay") and row.next_attempt_at is not None
    return bool(waiting and row.next_attempt_at <= now)


def _unsettled(where: Any, every: bool = False) -> Any:
    """The id and newest state of each event `where` holds that is not delivered or dead."""
    return (
        select(outbox_events.c.id, outbox_states.c.state, outbox_states.c.next_attempt_at)
        .select_from(_events_with_newest_state(every))
        .where(where, or_(outbox_states.c.id.is_(None), outbox_states.c.state.not_in(_SETTLED)))
    )


def _events_with_newest_state(every: bool) -> Any:
    """Events joined to their newest state row (none: new), each one's found through the
    index on (outbox_id, id); or, for `every` event, by one pass over all states, which
    PostgreSQL does faster than the lookups on a large outbox, while SQLite does the lookups
    faster (measured by hand on a million events; no bench/ scenario repeats it yet)."""
    if every:
        newest = (
            select(outbox_states.c.outbox_id, func.max(outbox_states.c.id).label("state_id"))
            .group_by(outbox_states.c.outbox_id)
            .subquery()
        )
        return outbox_events.outerjoin(newest, newest.c.outbox_id == outbox_events.c.id).outerjoin(
            outbox_states, outbox_states.c.id == newest.c.state_id
        )
    states = outbox_states.alias("any_state")
    state_id = (
        select(func.max(states.c.id))
        .where(states.c.outbox_id == outbox_events.c.id)
        .correlate(outbox_events)
        .scalar_subquery()
    )
    return outbox_events.outerjoin(outbox_states, outbox_states.c.id == state_id)


def _with_state(every: bool = False) -> Any:
    """Each event with its newest state row (none: new)."""
    return select(
        outbox_events,
        outbox_states.c.id.label("state_row"),
        outbox_states.c.state,
        outbox_states.c.attempt_no,
        outbox_states.c.next_attempt_at,
        outbox_states.c.error,
    ).select_from(_events_with_newest_state(every))


def _event(row: Any) -> OutboxEvent:
    return OutboxEvent(
        id=row.id,
        subscriber=row.subscriber,
        event_id=row.event_id,
        event_type=row.event_type,
        payload=row.payload,
        created_at=row.created_at,
        state=row.state or "new",
        attempts=row.attempt_no or 0,
        next_attempt_at=row.next_attempt_at,
        last_error=row.error,
    )
