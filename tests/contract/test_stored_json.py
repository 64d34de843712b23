"""JSON columns are stored as canonical JSON text, and `verify` hashes the value a stored text
holds: a text rewritten to the same value verifies, a changed value does not. On SQLite and
PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from labledger.core.leaves import value_text
from labledger.core.model import NewVerification
from labledger.storage.engine import stored_json
from labledger.storage.merkle_log import SqlLog
from labledger.storage.verification import verify_database
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.contract.test_tamper_evidence import superuser
from tests.support import SIGNER, commit, push_payload, session_spec

ATTEMPTS = 6
ODD = 'é ✓ 𝄞 "q" \\ \n \x01 \u2028'


def _files(n: int) -> dict[str, list[str]]:
    return {"removed": [], "modified": ["README.md"], "added": [f"src/step{n}/{ODD}.py"]}


@pytest.fixture
def logged(ledger: Ledger) -> Ledger:
    """Attempts whose changed files all differ, a grader's result, all under a checkpoint."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    commits = [commit(**_files(n)) for n in range(ATTEMPTS)]
    answer = deliver(ledger.store, push_payload(commits))
    first = answer.body["attempt_ids"][0]  # type: ignore[index]
    details = {"z": [1, None, True], "a": {"ü": ODD}}
    ledger.store.record_verification(
        NewVerification(first, "ci", "run-1", "passed", 1, 2, details, datetime.now(UTC), "test")
    )
    assert SqlLog(ledger.engine).integrate(SIGNER) is not None
    return ledger


def _stored(ledger: Ledger, sql: str) -> list[str]:
    with ledger.engine.connect() as conn:
        return [row[0] for row in conn.execute(text(sql))]


def _rewrite_files(ledger: Ledger, attempt_ids: list[int], write: Callable[[Any], str]) -> None:
    """Behind labledger's back: each attempt's changed_files text replaced by `write(value)`."""
    with superuser(ledger) as conn:
        for attempt_id in attempt_ids:
            raw = conn.execute(
                text("SELECT CAST(changed_files AS TEXT) FROM attempts WHERE id = :i"),
                {"i": attempt_id},
            ).scalar_one()
            new = write(json.loads(raw))
            cast = "CAST(:t AS JSON)" if ledger.dialect == "postgresql" else ":t"
            conn.execute(
                text(f"UPDATE attempts SET changed_files = {cast} WHERE id = :i"),
                {"t": new, "i": attempt_id},
            )


def test_json_columns_are_stored_as_their_canonical_text(logged: Ledger) -> None:
    texts = [
        *_stored(logged, "SELECT CAST(changed_files AS TEXT) FROM attempts"),
        *_stored(logged, "SELECT CAST(details AS TEXT) FROM verification_results"),
        *_stored(logged, "SELECT CAST(details AS TEXT) FROM audit_events"),
    ]
    assert len(texts) >= ATTEMPTS + 2
    assert texts == [value_text(json.loads(t)) for t in texts]
    assert any(ODD in json.loads(t).get("added", [""])[0] for t in texts[:ATTEMPTS])


@pytest.mark.parametrize(
    "which",
    [
        pytest.param(lambda ids: ids, id="every-row"),
        pytest.param(lambda ids: ids[:1], id="the-first-row"),
        pytest.param(lambda ids: ids[3:4], id="a-later-row"),
    ],
)
def test_a_stored_text_rewritten_to_the_same_value_still_verifies(
    logged: Ledger, which: Callable[[list[int]], list[int]]
) -> None:
    ids = [int(i) for i in _stored(logged, "SELECT id FROM attempts ORDER BY id")]
    spaced = lambda value: json.dumps(value, indent=1)  # noqa: E731 - same value, not canonical
    _rewrite_files(logged, which(ids), spaced)
    assert _stored(logged, f"SELECT CAST(changed_files AS TEXT) FROM attempts WHERE id = {ids[0]}")
    report = verify_database(logged.engine, SIGNER.verifier)
    assert report.problems == []


def test_a_changed_value_in_canonical_text_is_detected(logged: Ledger) -> None:
    ids = [int(i) for i in _stored(logged, "SELECT id FROM attempts ORDER BY id")]

    def forged(value: dict[str, list[str]]) -> str:
        return value_text({**value, "removed": ["tests/test_grading.py"]})

    _rewrite_files(logged, ids[2:3], forged)
    report = verify_database(logged.engine, SIGNER.verifier)
    mismatched = [(p.table, p.entry_id) for p in report.problems if p.code == "leaf_mismatch"]
    assert mismatched == [("attempts", ids[2])]


@pytest.mark.parametrize(
    "value",
    [
        {"x": float("nan")},
        {1: "a", "b": 2},
        {"lone": "\ud800"},
    ],
    ids=["nan", "mixed-keys", "lone-surrogate"],
)
def test_what_the_canonical_form_cannot_hold_is_written_as_json_dumps_writes_it(
    value: Any,
) -> None:
    assert stored_json(value) == json.dumps(value)


def test_a_value_json_cannot_write_still_fails() -> None:
    with pytest.raises(TypeError):
        stored_json({"when": datetime.now(UTC)})
