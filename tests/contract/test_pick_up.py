"""Invariant 11: a session created (or widened) after the push picks up the recorded pushes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from labledger.core.service import check_session_spec
from labledger.storage.merkle_log import SqlLog
from labledger.storage.sql_store import SqlStore
from labledger.storage.verification import verify_database
from tests.conftest import Ledger
from tests.contract.helpers import audit_actions, deliver
from tests.support import REPO_ID, SIGNER, commit, push_payload, session_spec

PUSHED = datetime.fromtimestamp(1_764_000_000, UTC)
NOW = PUSHED + timedelta(days=3)


def test_session_created_after_push_picks_up_its_attempts(ledger: Ledger) -> None:
    """Pushes recorded before their session exist become its attempts, with the push's time."""
    announcing = SqlStore(ledger.engine, ("platform",))
    c1, c2 = commit(), commit()
    early = deliver(announcing, push_payload([c1, c2]), received_at=PUSHED)
    assert early.body["attempt_ids"] == []
    SqlLog(ledger.engine).integrate(SIGNER, PUSHED + timedelta(hours=1))

    opened = announcing.open_sessions([session_spec(due_at=PUSHED + timedelta(days=1))], "t", NOW)
    session, picked = opened[0].session, opened[0].attempt_ids
    assert len(picked) == 2
    found = announcing.all_session_attempts(session.id)
    assert [a.commit.sha for a in found] == [c1["id"], c2["id"]]
    assert all(a.trusted_time == PUSHED and not session.is_late(a.trusted_time) for a in found)
    assert all(a.push_id == early.body["push_id"] for a in found)
    assert ledger.store.count_rows()["outbox_events"] == 2  # announced like any attempt

    # Another push of the same commits (not a replay of the first body: its time differs).
    pushed_again = push_payload([c1, c2], pushed_at=1_764_000_060)
    again = deliver(announcing, pushed_again, received_at=NOW)
    assert again.body["attempt_ids"] == []  # UNIQUE(session_id, commit_sha) still holds
    assert SqlLog(ledger.engine).integrate(SIGNER, NOW + timedelta(hours=1)) is not None
    report = verify_database(ledger.engine, SIGNER.verifier)
    assert report.ok, report.problems


def test_session_picks_up_only_pushes_in_its_window_and_branches(ledger: Ledger) -> None:
    """A push before opens_at, to an unmatched branch or of another repository is not picked up."""
    deliver(ledger.store, push_payload([commit()], ref="refs/heads/scratch"), received_at=NOW)
    deliver(ledger.store, push_payload([commit()], repository_id=REPO_ID + 1), received_at=NOW)
    deliver(ledger.store, push_payload([commit()], pushed_at=1_700_000_000), received_at=NOW)
    kept = commit()
    deliver(ledger.store, push_payload([kept]), received_at=NOW)
    spec = session_spec(branch_glob="main", opens_at=datetime(2025, 1, 1, tzinfo=UTC))
    opened = ledger.store.open_sessions([spec], "t", NOW)[0]
    found = ledger.store.all_session_attempts(opened.session.id)
    assert [a.commit.sha for a in found] == [kept["id"]]


def test_deadline_extension_picks_up_pushes_now_inside_window(ledger: Ledger) -> None:
    """Moving closes_at past a recorded push makes that push's commits attempts of the session."""
    spec = session_spec(due_at=PUSHED - timedelta(days=2), closes_at=PUSHED - timedelta(days=1))
    session = ledger.store.create_session(spec, "t", PUSHED - timedelta(days=5))
    late = commit()
    answer = deliver(ledger.store, push_payload([late]), received_at=PUSHED)
    assert answer.body["attempt_ids"] == []
    assert answer.body["reason"] == "outside window"

    changed = ledger.store.apply_deadline_change(
        session.id,
        {"closes_at": PUSHED + timedelta(days=1)},
        "illness",
        "t",
        NOW,
        check_session_spec,
    )
    assert len(changed.attempt_ids) == 1
    found = ledger.store.all_session_attempts(session.id)
    assert [a.commit.sha for a in found] == [late["id"]]
    assert changed.session.is_late(found[0].trusted_time)
    assert audit_actions(ledger.store)[-1] == "session.deadline_changed"
    assert ledger.store.open_sessions([], "t", NOW) == []


def test_push_without_attempt_says_why(ledger: Ledger) -> None:
    """The webhook answer and its audit event name why a recorded push produced no attempt."""
    nobody = deliver(ledger.store, push_payload([commit()]), received_at=NOW)
    assert nobody.body["reason"] == f"no session for repository {REPO_ID}"
    ledger.store.create_session(session_spec(branch_glob="main"), "t", NOW)
    other = deliver(ledger.store, push_payload([commit()], ref="refs/heads/dev"), received_at=NOW)
    assert other.body["reason"] == "branch not matched"
    early = deliver(ledger.store, push_payload([commit()], pushed_at=1_600_000_000))
    assert early.body["reason"] == "outside window"
    taken = deliver(ledger.store, push_payload([commit()]), received_at=NOW)
    assert taken.body["attempt_ids"] and taken.body.get("reason") is None
    reasons = [e["details"].get("no_attempt_reason") for e in _recorded_audits(ledger)]
    assert reasons == [
        f"no session for repository {REPO_ID}",
        "branch not matched",
        "outside window",
        None,
    ]


def _recorded_audits(ledger: Ledger) -> list[dict[str, dict[str, object]]]:
    from sqlalchemy import select

    from labledger.storage.tables import audit_events

    with ledger.engine.connect() as conn:
        rows = conn.execute(
            select(audit_events.c.details)
            .where(audit_events.c.action == "delivery.recorded")
            .order_by(audit_events.c.id)
        )
        return [{"details": r.details} for r in rows]


def test_session_created_while_push_in_flight_still_picks_it_up(ledger: Ledger) -> None:
    """A push committing while its session is being created is linked by one side or the other."""
    import threading

    from labledger.core.service import _record_new
    from labledger.forges.github import make_delivery, parse_github_push, read_envelope
    from tests.support import body_of, headers_for

    body = body_of(push_payload([commit()]))
    delivery = make_delivery(read_envelope(headers_for(body)), body, PUSHED)
    recorded, release = threading.Event(), threading.Event()

    def push_in_flight() -> None:
        with ledger.store.transaction() as tx:
            _record_new(tx, delivery, parse_github_push(body))
            recorded.set()
            release.wait(5)

    pusher = threading.Thread(target=push_in_flight)
    pusher.start()
    assert recorded.wait(5)
    opened: list[int] = []
    creator = threading.Thread(
        target=lambda: opened.append(ledger.store.create_session(session_spec(), "t", NOW).id)
    )
    creator.start()
    creator.join(1)  # without a guard it commits here, before the push does
    release.set()
    pusher.join()
    creator.join()
    assert len(ledger.store.all_session_attempts(opened[0])) == 1
