"""Recording deliveries through the same path as the webhook route."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from labledger.config import GITHUB_MAX_BODY_BYTES
from labledger.services.ingest import WebhookAnswer, receive_github
from labledger.storage.sql_store import SqlStore
from labledger.storage.tables import archives, tombstones
from tests.support import SECRET, body_of, headers_for


def deliver(
    store: SqlStore,
    payload: dict[str, Any] | bytes,
    *,
    received_at: datetime | None = None,
    **header_options: Any,
) -> WebhookAnswer:
    body = payload if isinstance(payload, bytes) else body_of(payload)
    return receive_github(
        store,
        SECRET.encode(),
        headers_for(body, **header_options),
        body,
        received_at or datetime.now(UTC),
        GITHUB_MAX_BODY_BYTES,
    )


def ledger_counts(store: SqlStore) -> dict[str, int]:
    """Row counts of the ledger's record tables (not the audit log or the Merkle log)."""
    counts = store.count_rows()
    for bookkeeping in ("audit_events", "log_queue", "log_entries", "merkle_nodes", "checkpoints"):
        counts.pop(bookkeeping)
    return counts


def audit_actions(store: SqlStore) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(text("SELECT action FROM audit_events ORDER BY id")).scalars())


def fill_every_table(store: SqlStore, now: datetime) -> None:
    """Rows in every table: sessions, a delivery, a deadline change, a result, the outbox and
    its states, and (after one integration, left to the caller) the Merkle log."""
    from labledger.core.model import NewVerification
    from labledger.core.service import check_session_spec
    from tests.support import commit, push_payload, session_spec

    announcing = SqlStore(store.engine, ("platform",))
    session = announcing.create_session(session_spec(), "test", now)
    answer = deliver(announcing, push_payload([commit(), commit()]))
    attempt_id = answer.body["attempt_ids"][0]  # type: ignore[index]
    announcing.record_verification(
        NewVerification(attempt_id, "ci", "run-1", "passed", 1000, 1000, {}, now, "test")
    )
    announcing.change_deadline(
        session.id, {"due_at": None}, "test", "test", now, check_session_spec
    )
    with store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO outbox_states (outbox_id, state, attempt_no, recorded_at) "
                "SELECT id, 'delivered', 1, created_at FROM outbox_events"
            )
        )
        # Retention's bookkeeping, as plain rows: an archive and a tombstone (issue 7).
        conn.execute(
            archives.insert().values(
                first_leaf=0,
                end_leaf=1,
                checkpoint_note="note",
                manifest_sha256=b"\0" * 32,
                location="/archive",
                created_at=now,
            )
        )
        conn.execute(
            tombstones.insert().values(entry_type="delivery", entry_id=1, what="body", event_id=1)
        )
