"""The API's hot reads answer what the one-attempt read answers, on every store."""

from __future__ import annotations

from datetime import UTC, datetime

from labledger.storage.rows import attempt_from_row
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.support import commit, push_payload, session_spec

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _three_pushes(ledger: Ledger) -> int:
    """Three deliveries of two commits each, by three different accounts."""
    session_id = ledger.store.create_session(session_spec(), "test", NOW).id
    for n in range(3):
        payload = push_payload([commit(f"r{n}a", added=[f"ü{n}.md"]), commit(f"r{n}b")])
        payload["sender"] = {**payload["sender"], "login": f"user{n}", "id": 100 + n}
        payload["pusher"] = {"name": f"pusher{n}", "email": f"p{n}@example.edu"}
        deliver(ledger.store, payload, delivery_id=f"d-{n}")
    return session_id


def test_a_page_gives_each_attempt_its_own_push_and_delivery(ledger: Ledger) -> None:
    """Every attempt of a page, cut anywhere, equals the attempt as read alone."""
    session_id = _three_pushes(ledger)
    store = ledger.store
    for limit in (100, 3, 1):
        after, seen = 0, []
        while True:
            _, page = store.session_page(session_id, after=after, limit=limit)
            seen.extend(page)
            if len(page) < limit:
                break
            after = page[-1].id
        assert [r.delivery_id for r in seen] == ["d-0", "d-0", "d-1", "d-1", "d-2", "d-2"]
        for row in seen:
            assert attempt_from_row(row) == store.get_attempt(row.id).attempt
        assert [r.sender_login for r in seen[::2]] == ["user0", "user1", "user2"]
        assert seen[2].changed_files == {
            "added": ["ü1.md"],
            "modified": ["README.md"],
            "removed": [],
        }


def test_a_delivery_view_holds_its_push_and_attempts_as_read_alone(ledger: Ledger) -> None:
    """The delivery read's push, delivery and attempts equal the one-item reads."""
    _three_pushes(ledger)
    store = ledger.store
    view = store.delivery_view("github", "d-1")
    assert [r.delivery_id for r in view.attempts] == ["d-1", "d-1"]
    for row in view.attempts:
        record = store.get_attempt(row.id)
        assert attempt_from_row(row) == record.attempt
        assert view.push == record.push and view.delivery == record.delivery
    assert set(view.sessions) == {view.attempts[0].session_id}


def test_a_commit_lookup_answers_as_the_attempt_read_alone(ledger: Ledger) -> None:
    """The commit read's attempts equal the one-attempt read, with their sessions."""
    session_id = _three_pushes(ledger)
    store = ledger.store
    _, page = store.session_page(session_id)
    found, sessions = store.commit_attempts(page[3].commit_sha)
    assert [attempt_from_row(r) for r in found] == [store.get_attempt(page[3].id).attempt]
    assert sessions[session_id] == store.get_session(session_id)
