"""The group-committing writer: deliveries waiting together share one commit, each atomic."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, event, text

from labledger.core import service
from labledger.core.errors import DeliveryAlreadyRecorded
from labledger.core.model import Delivery, Outcome, Push, RecordResult
from labledger.core.ports import LedgerWriter
from labledger.forges import github
from labledger.storage.engine import WRITE_OPTION, make_engine
from labledger.storage.sql_store import SqlStore
from tests.conftest import Ledger
from tests.contract.helpers import audit_actions
from tests.support import body_of, commit, headers_for, push_payload, session_spec

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
POLLS = 200_000  # a bound on waiting for threads to queue, not a time


def _delivery(
    payload: dict[str, Any], delivery_id: str | None = None, body: bytes | None = None
) -> tuple[Delivery, Push]:
    body = body if body is not None else body_of(payload)
    headers = headers_for(body, delivery_id=delivery_id)
    envelope = github.read_envelope(headers)
    return github.make_delivery(envelope, body, NOW), github.parse_github_push(body)


class Answers:
    """What each piece of work answered, and the order of answers and commits."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.outcomes: dict[str, object] = {}
        self.lock = threading.Lock()

    def note(self, what: str) -> None:
        with self.lock:
            self.events.append(what)


def _wait_until(condition: Callable[[], bool]) -> None:
    for _ in range(POLLS):
        if condition():
            return
        threading.Event().wait(0.0005)
    raise AssertionError("threads did not queue")


def in_one_batch(
    store: SqlStore, pieces: dict[str, Callable[[], object]], answers: Answers | None = None
) -> dict[str, object]:
    """Run `pieces` from threads while a first piece holds the lead: they queue meanwhile and
    then commit as one batch. Each name maps to its result or the exception it raised."""
    answers = answers or Answers()
    gate = threading.Event()
    queued = store.group_commit.waiting

    def hold() -> None:
        try:
            store.write("", lambda _tx: gate.wait())
        except Exception as exc:  # a test that makes commits fail fails this one's too
            answers.outcomes["lead"] = exc

    lead = threading.Thread(target=hold)
    lead.start()
    try:
        _wait_until(lambda: store.group_commit.waiting == queued + 1)
    except AssertionError:
        gate.set()
        raise

    def run(name: str, piece: Callable[[], object]) -> None:
        try:
            found: object = piece()
        except Exception as exc:
            found = exc
        answers.outcomes[name] = found
        answers.note(f"answer {name}")

    threads = [threading.Thread(target=run, args=item) for item in pieces.items()]
    try:
        for thread in threads:
            thread.start()
        _wait_until(lambda: store.group_commit.waiting == queued + 1 + len(pieces))
    finally:
        gate.set()
        for thread in [lead, *threads]:
            thread.join()
    return answers.outcomes


def one_lane(ledger: Ledger) -> SqlStore:
    """The ledger's store with one group commit at a time (PostgreSQL runs several): work
    queued behind a running batch then waits for it, as in_one_batch needs."""
    return SqlStore(ledger.engine, write_lanes=1)


def _record(store: SqlStore, delivery: Delivery, push: Push) -> Callable[[], RecordResult]:
    return lambda: service.record_push_delivery(store, delivery, push)


def _count(ledger: Ledger, table: str) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_a_failing_delivery_in_a_batch_rolls_back_alone(ledger: Ledger) -> None:
    """One delivery of a batch fails: its rows and log entries go, the others commit."""
    store = one_lane(ledger)
    store.create_session(session_spec(), "test", NOW)
    first, failing, last = (_delivery(push_payload([commit(), commit()])) for _ in range(3))

    def fail_midway() -> object:
        def work(tx: LedgerWriter) -> None:
            service._record_new(tx, *failing)
            raise RuntimeError("fails after its rows are written")

        return store.write(service.write_key(failing[0], failing[1].repository_id), work)

    queued_before = _count(ledger, "log_queue")
    outcomes = in_one_batch(
        store,
        {"first": _record(store, *first), "failing": fail_midway, "last": _record(store, *last)},
    )
    assert isinstance(outcomes["failing"], RuntimeError)
    for name in ("first", "last"):
        result = outcomes[name]
        assert isinstance(result, RecordResult) and result.outcome is Outcome.RECORDED
        assert len(result.attempt_ids) == 2
    assert store.find_delivery("github", failing[0].delivery_id) is None
    assert _count(ledger, "deliveries") == 2
    assert _count(ledger, "attempts") == 4
    # each recorded delivery queues its delivery, push, two attempts and audit event
    assert _count(ledger, "log_queue") - queued_before == 2 * 5
    assert (store.commit_sizes.commits, store.commit_sizes.pieces) == (2, 4)  # lead, then 3


def test_two_identical_deliveries_in_one_batch_give_one_record_and_one_duplicate(
    ledger: Ledger,
) -> None:
    """The same delivery twice in one batch: the unique key keeps one, the other is a duplicate."""
    store = one_lane(ledger)
    store.create_session(session_spec(), "test", NOW)
    delivery, push = _delivery(push_payload([commit()]))
    outcomes = in_one_batch(
        store, {"a": _record(store, delivery, push), "b": _record(store, delivery, push)}
    )
    results = sorted(outcomes.values(), key=lambda r: r.outcome.value)  # type: ignore[attr-defined]
    assert [r.outcome for r in results] == [Outcome.DUPLICATE, Outcome.RECORDED]
    assert results[0].push_id == results[1].push_id
    assert results[0].attempt_ids == results[1].attempt_ids
    assert _count(ledger, "deliveries") == 1 and _count(ledger, "attempts") == 1
    assert audit_actions(store).count("delivery.duplicate") == 1


def test_a_body_replayed_in_the_same_batch_is_a_replay(ledger: Ledger) -> None:
    """One signed body under two delivery ids in one batch: one record, one replay."""
    store = one_lane(ledger)
    store.create_session(session_spec(), "test", NOW)
    body = body_of(push_payload([commit()]))
    one, other = _delivery({}, "replay-1", body), _delivery({}, "replay-2", body)
    outcomes = in_one_batch(store, {"one": _record(store, *one), "other": _record(store, *other)})
    assert sorted(r.outcome.value for r in outcomes.values()) == ["duplicate", "recorded"]  # type: ignore[attr-defined]
    assert _count(ledger, "deliveries") == 1 and _count(ledger, "pushes") == 1
    assert audit_actions(store).count("delivery.replay") == 1


def test_nothing_is_answered_before_the_commit(ledger: Ledger) -> None:
    """Every delivery of a batch is answered after its commit, and is then visible to all."""
    store = one_lane(ledger)
    answers = Answers()

    def note_commit(conn: Connection) -> None:
        if conn.get_execution_options().get(WRITE_OPTION):  # not the reads' commits
            answers.note("commit")

    event.listen(ledger.engine, "commit", note_commit)
    pieces = {}
    for n in range(4):
        delivery, push = _delivery(push_payload([commit()]))

        def piece(delivery: Delivery = delivery, push: Push = push) -> bool:
            service.record_push_delivery(store, delivery, push)
            # another connection sees it the moment it is answered
            return store.find_delivery("github", delivery.delivery_id) is not None

        pieces[f"d{n}"] = piece
    outcomes = in_one_batch(store, pieces, answers)
    assert all(outcomes[name] is True for name in pieces)
    _lead, batch_commit = [i for i, what in enumerate(answers.events) if what == "commit"]
    answered = [i for i, what in enumerate(answers.events) if what.startswith("answer")]
    assert len(answered) == 4 and min(answered) > batch_commit


def test_a_redelivery_after_a_failed_batch_is_not_a_duplicate(ledger: Ledger) -> None:
    """A batch whose commit fails answers every piece with the failure, none as recorded."""
    store = one_lane(ledger)
    delivery, push = _delivery(push_payload([commit()]))

    def refuse_commit(_conn: object) -> None:
        raise RuntimeError("the commit failed")

    event.listen(ledger.engine, "commit", refuse_commit)
    outcomes = in_one_batch(
        store, {"a": _record(store, delivery, push), "b": _record(store, delivery, push)}
    )
    event.remove(ledger.engine, "commit", refuse_commit)
    assert all(isinstance(o, RuntimeError) for o in outcomes.values()), outcomes
    assert _count(ledger, "deliveries") == 0
    assert not any(isinstance(o, DeliveryAlreadyRecorded) for o in outcomes.values())
    assert service.record_push_delivery(store, delivery, push).outcome is Outcome.RECORDED


def test_two_postgresql_writers_batching_on_the_same_repositories_complete(
    pg_ledger: Ledger,
) -> None:
    """Two processes' writers batch crossing deliveries at once: deadlocks are retried, and
    every delivery is recorded exactly once."""
    stores = [one_lane(pg_ledger), SqlStore(make_engine(pg_ledger.url), write_lanes=1)]
    try:
        pg_ledger.store.create_session(session_spec(branch_glob="*"), "test", NOW)
        rounds = 3
        for round_no in range(rounds):
            shared = [commit() for _ in range(6)]
            # batch A holds a then d, batch B holds b then e: d and e take commits the other
            # batch took first, in crossing order
            crossing = {
                "a": shared[:3], "b": shared[3:], "d": shared[3:][::-1], "e": shared[:3][::-1]
            }  # fmt: skip
            made = {
                name: _delivery(push_payload(commits, ref=f"refs/heads/r{round_no}-{name}"))
                for name, commits in crossing.items()
            }
            results: dict[str, dict[str, object]] = {}

            def batch(
                i: int,
                names: tuple[str, str],
                made: dict[str, Any] = made,
                results: dict[str, dict[str, object]] = results,
            ) -> None:
                pieces = {n: _record(stores[i], *made[n]) for n in names}
                results[str(i)] = in_one_batch(stores[i], pieces)

            batches = [
                threading.Thread(target=batch, args=(i, names))
                for i, names in enumerate((("a", "d"), ("b", "e")))
            ]
            for thread in batches:
                thread.start()
            for thread in batches:
                thread.join()
            outcomes = {**results["0"], **results["1"]}
            assert all(
                isinstance(r, RecordResult) and r.outcome is Outcome.RECORDED
                for r in outcomes.values()
            ), outcomes
        assert _count(pg_ledger, "deliveries") == 4 * rounds
        assert _count(pg_ledger, "attempts") == 6 * rounds
    finally:
        stores[1].engine.dispose()


@pytest.mark.parametrize("size", [1, 3])
def test_deliveries_per_commit_are_counted(ledger: Ledger, size: int) -> None:
    """The writer counts how many deliveries each commit carried."""
    store = one_lane(ledger)
    pieces = {}
    for n in range(size):
        delivery, push = _delivery(push_payload([commit()]))
        pieces[str(n)] = _record(store, delivery, push)
    in_one_batch(store, pieces)
    sizes = store.commit_sizes
    assert (sizes.commits, sizes.pieces) == (2, size + 1)  # the lead alone, then the batch
    assert sizes.buckets[0] == (2 if size == 1 else 1)  # commits of one delivery


def test_concurrent_deliveries_and_their_redeliveries_each_record_once(ledger: Ledger) -> None:
    """Many threads deliver at once, each delivery twice, through the store's own lanes: each
    delivery is recorded once and answered once as recorded, once as a duplicate."""
    store = ledger.store
    store.create_session(session_spec(), "test", NOW)
    made = [_delivery(push_payload([commit()])) for _ in range(12)]
    outcomes: list[Outcome] = []

    def deliver_all(order: list[tuple[Delivery, Push]]) -> None:
        for delivery, push in order:
            outcomes.append(service.record_push_delivery(store, delivery, push).outcome)

    threads = [
        threading.Thread(target=deliver_all, args=(made[i::4] if i % 2 else made[i::4][::-1],))
        for i in range(4)
    ] + [threading.Thread(target=deliver_all, args=(made[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.value for o in outcomes) == ["duplicate"] * 12 + ["recorded"] * 12
    assert _count(ledger, "deliveries") == 12 and _count(ledger, "attempts") == 12
