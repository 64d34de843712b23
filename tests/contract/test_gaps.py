"""Invariant 11: push chains (before -> after per repository and ref) report missing links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from labledger.core.model import ZERO_SHA
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.support import REPO_ID, commit, push_payload, session_spec

T0 = 1_764_000_000
NOW = datetime.fromtimestamp(T0, UTC) + timedelta(days=1)


def _push(ledger: Ledger, before: str, head: dict[str, Any], minute: int, **options: Any) -> int:
    payload = push_payload([head], before=before, pushed_at=T0 + 60 * minute, **options)
    answer = deliver(ledger.store, payload, received_at=NOW)
    push_id = answer.body["push_id"]
    assert isinstance(push_id, int)
    return push_id


def test_missing_push_is_reported_as_gap(ledger: Ledger) -> None:
    """A push whose `before` no recorded push of its ref ended at is an open gap."""
    session = ledger.store.create_session(session_spec(), "t", NOW)
    a, b, c = commit(), commit(), commit()
    _push(ledger, ZERO_SHA, a, 0, created=True)
    third = _push(ledger, b["id"], c, 2)  # the push a -> b never arrived
    _push(ledger, a["id"], commit(), 3, repository_id=REPO_ID + 1)  # another repository's chain

    gaps = ledger.store.push_chain_gaps()
    assert [(g.push_id, g.missing_after, g.ref) for g in gaps] == [
        (third, b["id"], "refs/heads/main")
    ]
    assert ledger.store.push_chain_gaps(forge="github", repository_id=REPO_ID + 1) == []
    assert ledger.store.session_gaps(ledger.store.get_session(session.id)) == 1


def test_gap_closes_when_missing_push_is_recorded(ledger: Ledger) -> None:
    """Recording the missing push, even after the push that follows it, closes the gap."""
    a, b, c = commit(), commit(), commit()
    _push(ledger, ZERO_SHA, a, 0, created=True)
    _push(ledger, b["id"], c, 2)
    assert len(ledger.store.push_chain_gaps()) == 1
    _push(ledger, a["id"], b, 1)  # redelivered late, pushed in between
    assert ledger.store.push_chain_gaps() == []


def test_force_push_and_branch_creation_are_not_gaps(ledger: Ledger) -> None:
    """Creations start from zeros, force-pushes name the old head, a first push starts a chain."""
    a, b, c, d = commit(), commit(), commit(), commit()
    _push(ledger, commit()["id"], a, 0)  # from a template: a head nobody pushed while we watched
    _push(ledger, a["id"], b, 1)
    _push(ledger, b["id"], c, 2, forced=True)  # rewrites b away, still names it as before
    _push(ledger, ZERO_SHA, d, 3, ref="refs/heads/feature", created=True)
    deliver(
        ledger.store,
        push_payload(
            [], before=d["id"], deleted=True, ref="refs/heads/feature", pushed_at=T0 + 240
        ),
        received_at=NOW,
    )
    _push(ledger, ZERO_SHA, d, 5, ref="refs/heads/feature", created=True)
    assert ledger.store.push_chain_gaps() == []
