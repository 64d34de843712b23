"""Where `labledger reconcile` stopped reading each hook's deliveries, kept in the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine, select

from labledger.storage.engine import translate_db_errors
from labledger.storage.tables import deliveries, reconcile_marks


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
