"""Attacks on the ingest path (issue 21 items 5 and 6, issue 22 item 7), on both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from labledger.config import GITHUB_MAX_BODY_BYTES, Settings
from labledger.core.errors import MalformedPayload, SignatureRejected
from labledger.services.ingest import receive_github
from tests.conftest import Ledger
from tests.contract.helpers import audit_actions, deliver, ledger_counts
from tests.support import body_of, commit, headers_for, push_payload, session_spec

COURSE_OWNER = 21031067  # repository.owner.id in the recorded payload
STUDENT_OWNER = 5550001
STUDENT_SECRET = "secret-a-student-could-read"
COURSE_SECRET = "secret-only-staff-hold"


def _scoped_settings() -> Settings:
    return Settings.from_env(
        {
            "LABLEDGER_GITHUB_WEBHOOK_SECRETS": (
                f"owner:{STUDENT_OWNER}={STUDENT_SECRET},owner:{COURSE_OWNER}={COURSE_SECRET}"
            )
        }
    )


def _receive(ledger: Ledger, payload: dict[str, Any], secret: str) -> Any:
    body = body_of(payload)
    return receive_github(
        ledger.store,
        _scoped_settings().github_secrets(),
        headers_for(body, secret=secret),
        body,
        datetime.now(UTC),
        GITHUB_MAX_BODY_BYTES,
    )


def test_leaked_secret_cannot_record_push_for_another_owner(ledger: Ledger) -> None:
    """A secret scoped to one owner cannot sign a push into another owner's repository."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    before = ledger_counts(ledger.store)
    with pytest.raises(SignatureRejected, match="outside that secret's scope"):
        _receive(ledger, push_payload([commit()]), STUDENT_SECRET)
    assert ledger_counts(ledger.store) == before
    assert _receive(ledger, push_payload([commit()]), COURSE_SECRET).outcome == "recorded"


def test_installation_secret_is_refused_without_its_installation(ledger: Ledger) -> None:
    """A secret scoped to an App installation signs only payloads naming that installation."""
    settings = Settings.from_env({"LABLEDGER_GITHUB_WEBHOOK_SECRETS": "installation:99=app-secret"})
    payload = push_payload([commit()])
    body = body_of(payload)
    with pytest.raises(SignatureRejected, match="installation is 1"):
        receive_github(
            ledger.store,
            settings.github_secrets(),
            headers_for(body, secret="app-secret"),
            body,
            datetime.now(UTC),
            GITHUB_MAX_BODY_BYTES,
        )
    assert ledger.store.count_rows()["deliveries"] == 0


def test_replayed_body_under_new_delivery_id_is_duplicate(ledger: Ledger) -> None:
    """The same signed body under fresh delivery ids answers duplicate and writes no ledger rows."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    body = body_of(push_payload([commit(), commit()]))
    first = deliver(ledger.store, body)
    after_first = ledger_counts(ledger.store)
    replays = [deliver(ledger.store, body) for _ in range(3)]
    assert first.outcome == "recorded"
    assert {r.outcome for r in replays} == {"duplicate"}
    assert {tuple(r.body["attempt_ids"]) for r in replays} == {tuple(first.body["attempt_ids"])}  # type: ignore[arg-type]
    assert ledger_counts(ledger.store) == after_first
    assert audit_actions(ledger.store).count("delivery.replay") == 3


def test_redelivery_keeps_answering_as_before(ledger: Ledger) -> None:
    """A redelivery (same id, same body) is still a duplicate, audited as one, not as a replay."""
    body = body_of(push_payload([commit()]))
    deliver(ledger.store, body, delivery_id="d-1")
    assert deliver(ledger.store, body, delivery_id="d-1").outcome == "duplicate"
    assert "delivery.replay" not in audit_actions(ledger.store)


def test_push_over_github_commit_limit_is_refused(ledger: Ledger) -> None:
    """A push listing more than GitHub's 2,048 commits is refused naming the limit; no rows."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    before = ledger.store.count_rows()
    with pytest.raises(MalformedPayload, match="more than 2048 commits"):
        deliver(ledger.store, push_payload([commit() for _ in range(2049)]))
    assert ledger.store.count_rows() == before
    assert deliver(ledger.store, push_payload([commit() for _ in range(2048)])).status == 202
