"""What `labledger reconcile` reads and keeps in the database: where it stopped reading each
hook's deliveries, which pushes the ledger holds, and which push times it should check."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Text, cast, func, select

from labledger.core.model import API_DELIVERY_PREFIX, is_time_unconfirmed
from labledger.storage.engine import translate_db_errors
from labledger.storage.rows import session_from_row, session_query
from labledger.storage.summary_reads import session_tallies
from labledger.storage.tables import (
    audit_events,
    deliveries,
    lab_sessions,
    pushes,
    reconcile_marks,
)

TIME_CHECKED = "push.time_checked"


@dataclass(frozen=True, slots=True)
class TimeClaim:
    """A push time a webhook claimed, to be checked against GitHub's activity."""

    push_id: int
    delivery_id: str
    ref: str
    before: str
    after: str
    pushed_at: datetime | None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.ref, self.before, self.after)


class ReconcileMarks:
    """The newest mark per hook is its position; a new position is a new row."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def position(self, hook: str) -> int:
        """The newest delivery id already reconciled for `hook`, 0 before the first run."""
        query = (
            select(reconcile_marks.c.last_delivery_id)
            .where(reconcile_marks.c.hook == hook)
            .order_by(reconcile_marks.c.id.desc())
            .limit(1)
        )
        with translate_db_errors(), self.engine.connect() as conn:
            found = conn.execute(query).scalar_one_or_none()
        return int(found or 0)

    def advance(self, hook: str, last_delivery_id: int, now: datetime) -> None:
        row = {"hook": hook, "last_delivery_id": last_delivery_id, "reconciled_at": now}
        with translate_db_errors(), self.engine.begin() as conn:
            conn.execute(reconcile_marks.insert().values(row))

    def held_guids(self, forge: str, guids: list[str]) -> set[str]:
        """Which of these delivery GUIDs the ledger already holds (any hook, any time)."""
        held: set[str] = set()
        with translate_db_errors(), self.engine.connect() as conn:
            for start in range(0, len(guids), 500):
                chunk = guids[start : start + 500]
                rows = conn.execute(
                    select(deliveries.c.delivery_id).where(
                        deliveries.c.forge == forge, deliveries.c.delivery_id.in_(chunk)
                    )
                )
                held.update(r.delivery_id for r in rows)
        return held

    def session_repositories(self, forge: str) -> list[tuple[int, str | None]]:
        """Each repository of a `forge` session once, with the newest name a session gave it."""
        s = lab_sessions.c
        query = (
            select(s.repository_id, func.max(s.repository_full_name))
            .where(s.forge == forge)
            .group_by(s.repository_id)
            .order_by(s.repository_id)
        )
        with translate_db_errors(), self.engine.connect() as conn:
            return [(int(r[0]), r[1]) for r in conn.execute(query)]

    def held_pushes(self, forge: str, repository_id: int) -> set[tuple[str, str, str]]:
        """(ref, before, after) of every push of the repository the ledger holds."""
        p = pushes.c
        query = select(p.ref, p.before_sha, p.after_sha).where(
            p.forge == forge, p.repository_id == repository_id
        )
        with translate_db_errors(), self.engine.connect() as conn:
            return {(r.ref, r.before_sha, r.after_sha) for r in conn.execute(query)}

    def time_claims(
        self, repository_id: int, skew: timedelta, every_counting: bool
    ) -> list[TimeClaim]:
        """The webhook pushes of a GitHub repository whose time is to be checked and has not
        been yet: those `time_unconfirmed`, and with `every_counting` the push of each
        session's attempt that counts."""
        p, d = pushes.c, deliveries.c
        checked = select(audit_events.c.target_id).where(
            audit_events.c.action == TIME_CHECKED, audit_events.c.target_type == "push"
        )
        query = (
            select(p.id, d.delivery_id, p.ref, p.before_sha, p.after_sha, p.pushed_at,
                   d.received_at)
            .join(deliveries, d.id == p.delivery_pk)
            .where(p.forge == "github", p.repository_id == repository_id)
            .where(~d.delivery_id.startswith(API_DELIVERY_PREFIX, autoescape=True))
            .where(cast(p.id, Text).not_in(checked))
            .order_by(p.id)
        )  # fmt: skip
        with translate_db_errors(), self.engine.connect() as conn:
            counting = set(self._counting_pushes(conn, repository_id)) if every_counting else set()
            rows = conn.execute(query).all()
        return [
            TimeClaim(*row[:6])
            for row in rows
            if row.id in counting or is_time_unconfirmed(row.pushed_at, row.received_at, skew)
        ]

    def _counting_pushes(self, conn: Any, repository_id: int) -> list[int]:
        s = lab_sessions.c
        query = session_query().where(s.forge == "github", s.repository_id == repository_id)
        found = []
        for row in conn.execute(query).all():
            for tallied in session_tallies(conn, session_id=session_from_row(row).id):
                if (counting := tallied.counted.counting) is not None:
                    found.append(counting.push_id)
        return found

    def time_check(self, push_id: int) -> dict[str, Any] | None:
        """The newest time check of a push (its audit event's details and when), or None."""
        a = audit_events.c
        query = (
            select(a.details, a.occurred_at)
            .where(a.target_type == "push", a.target_id == str(push_id))
            .where(a.action == TIME_CHECKED)
            .order_by(a.id.desc())
            .limit(1)
        )
        with translate_db_errors(), self.engine.connect() as conn:
            row = conn.execute(query).one_or_none()
        if row is None:
            return None
        details = dict(row.details)
        return {**details, "checked_at": row.occurred_at}
