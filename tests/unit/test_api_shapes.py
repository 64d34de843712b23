"""The hot read routes' plain-dict JSON is exactly what the documented API models say."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic_core import to_json

from labledger.core.model import Account, Identity, LabSession, PushRecord, StoredDelivery
from labledger.http import schemas
from labledger.storage import rows
from labledger.storage.rows import AttemptRow, DeliveryView, attempt_from_row
from tests.support import session_spec

DUE = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _row(attempt_id: int, pushed_at: datetime | None, **changed: object) -> AttemptRow:
    row = AttemptRow(
        id=attempt_id,
        session_id=1,
        commit_sha=f"{attempt_id:040x}",
        tree_sha=None,
        message="Implement step 2\n\nwith tests",
        author_name="Ada",
        author_email="ada@example.edu",
        author_username="ada",
        committer_name=None,
        committer_email=None,
        committer_username=None,
        claimed_timestamp="2026-11-24T16:58:12+01:00",
        is_distinct=True,
        changed_files={"added": ["a.py"], "modified": [], "removed": ["b.py", "c.py"]},
        branch="main",
        sender_login="ada",
        sender_id=77,
        pusher_name="ada",
        pusher_email=None,
        pushed_at=pushed_at,
        received_at=DUE + timedelta(seconds=3),
        push_id=9,
        delivery_id="d-1",
        delivery_pk=4,
    )
    return row._replace(**changed)


def _session() -> LabSession:
    return LabSession(1, session_spec(due_at=DUE), DUE)


def _as_sent(content: object) -> object:
    return json.loads(to_json(content))


def test_the_select_list_and_the_row_type_name_the_same_columns_in_order() -> None:
    """attempt_from_row and the JSON builders read rows by the order the query selects."""
    assert tuple(c.name for c in rows.attempt_query().selected_columns) == AttemptRow._fields
    for page in rows.ATTEMPT_PAGE.values():
        assert tuple(c.name for c in page.selected_columns) == AttemptRow._fields


@pytest.mark.parametrize(
    "row",
    [
        _row(1, DUE - timedelta(minutes=1)),
        _row(2, DUE + timedelta(microseconds=1)),
        _row(3, None),
        _row(4, None, received_at=DUE - timedelta(days=1), tree_sha="f" * 40),
    ],
)
def test_an_attempt_row_answers_as_attempt_out(row: AttemptRow) -> None:
    """The row builder and the model give the same JSON, `late` and `trusted_time` included."""
    session = _session()
    fast = schemas.attempt_row_json(row, session)
    model = schemas.AttemptOut.of(attempt_from_row(row), session)
    assert _as_sent(fast) == model.model_dump(mode="json")
    assert fast == schemas.attempt_json(attempt_from_row(row), session)


def test_a_delivery_view_answers_as_delivery_detail() -> None:
    """The delivery route's dict validates as DeliveryDetail and serialises the same way."""
    delivery = StoredDelivery(4, "github", "d-1", "4242", "push", b"\x01" * 32, DUE)
    push = PushRecord(
        9, "d-1", "github", 5, "o/r", "refs/heads/main", "a" * 40, "b" * 40, False, False,
        True, Identity("ada", None), Account("ada", 77), None, DUE, ("b" * 40,), True,
    )  # fmt: skip
    for pushed in (push, None):
        view = DeliveryView(delivery, pushed, [_row(1, None), _row(2, DUE)], {1: _session()})
        fast = schemas.delivery_detail_json(view)
        model = schemas.DeliveryDetail.model_validate(fast)
        assert _as_sent(fast) == model.model_dump(mode="json")
