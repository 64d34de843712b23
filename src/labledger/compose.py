"""The composition root: one ledger's SQL objects, built from the settings.

`http/` and `cli/` import the core, the services, the settings and this module, never
`labledger.storage` (tests/unit/test_house.py walks their imports): how the storage wing is
made (modules, engines, raw connections) can change behind the names below. Building a
`Ledger` opens nothing until a query runs. This module imports SQLAlchemy, so the CLI imports
it where a verb reaches the database, not at start-up; the maintenance entry points (verify,
retention, erasure) import their modules when called, so that reading verbs skip them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING

from labledger.storage import migrate as migrations
from labledger.storage.engine import make_engine, translate_db_errors
from labledger.storage.gaps import ChainGap
from labledger.storage.group_commit import BATCH_BUCKETS, BatchSizes
from labledger.storage.leaf_rows import ENTRY_TABLES
from labledger.storage.merkle_log import LogBacklog, SqlLog
from labledger.storage.outbox import SqlOutbox
from labledger.storage.reconcile_marks import ReconcileMarks
from labledger.storage.retention_plan import RetentionPlan, plan_retention
from labledger.storage.rows import AttemptRow, DeliveryView
from labledger.storage.sql_store import SqlStore

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from labledger.config import Settings
    from labledger.core.note import VerifierKey
    from labledger.core.retention_rules import Windows
    from labledger.core.verify import VerifyReport
    from labledger.storage.erasure import ErasureResult
    from labledger.storage.retention import PurgeResult

__all__ = [
    "BATCH_BUCKETS",
    "AttemptRow",
    "BatchSizes",
    "ChainGap",
    "DeliveryView",
    "Ledger",
    "LogBacklog",
    "ReconcileMarks",
    "RetentionPlan",
    "SqlLog",
    "SqlOutbox",
    "SqlStore",
    "erase",
    "make_engine",
    "migrations",
    "purge",
    "read_retention_plan",
]


class Ledger:
    """One ledger over one engine: the store and the objects that share its engine."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.engine: Engine = store.engine

    @classmethod
    def from_settings(cls, settings: Settings) -> Ledger:
        """The ledger at LABLEDGER_DATABASE_URL."""
        return cls.on(make_engine(settings.database_url), settings)

    @classmethod
    def on(cls, engine: Engine, settings: Settings) -> Ledger:
        """The ledger over an open engine; new entries are announced to the subscribers."""
        return cls(SqlStore(engine, settings.subscriber_names()))

    @cached_property
    def log(self) -> SqlLog:
        return SqlLog(self.engine)

    @cached_property
    def outbox(self) -> SqlOutbox:
        return SqlOutbox(self.engine)

    @cached_property
    def reconcile_marks(self) -> ReconcileMarks:
        return ReconcileMarks(self.engine)

    def origin(self) -> str:
        """The log's name, chosen at the first migration."""
        return migrations.ledger_origin(self.engine)

    def key_refusal(self, key_name: str) -> str | None:
        """Why a signing key of this name may not sign for this ledger; None when it may."""
        return migrations.key_refusal(self.engine, key_name)

    def is_migrated(self) -> bool:
        return migrations.is_up_to_date(self.engine)

    def purged_archive(self, kind: str, entry_id: int) -> int | None:
        """The archive holding a purged entry, or None when the entry was never purged."""
        from labledger.storage.retention import purged_archive

        return purged_archive(self.engine, kind, entry_id)

    def rows_to_verify(self) -> int:
        """Rows whose leaves `verify` recomputes, plus the log entries it checks."""
        counts = self.store.count_rows()
        return sum(counts[t.name] for t in ENTRY_TABLES.values()) + counts["log_entries"]

    def verify(
        self,
        key: VerifierKey,
        witnesses: Sequence[tuple[str, str]],
        *,
        check_bodies: bool,
        progress: Callable[[int], None],
    ) -> VerifyReport:
        """Rebuild the tree from the rows as they are now; check every signed checkpoint."""
        from labledger.storage.verification import verify_database

        return verify_database(
            self.engine,
            key,
            list(witnesses),
            check_bodies=check_bodies,
            progress=progress,
        )

    def close(self) -> None:
        self.engine.dispose()


def read_retention_plan(engine: Engine, windows: Windows, now: datetime) -> RetentionPlan:
    """What is past its window and what `purge` would remove at `now`, read in one snapshot."""
    with translate_db_errors(), engine.connect() as conn, conn.begin():
        return plan_retention(conn, windows, now)


def purge(
    engine: Engine,
    windows: Windows,
    now: datetime,
    actor: str,
    progress: Callable[[int], None] = lambda n: None,
) -> PurgeResult:
    """Remove what an archive covers and is past its window, leaving tombstones."""
    from labledger.storage.retention import purge as purge_archived

    return purge_archived(engine, windows, now, actor, progress=progress)


def erase(
    engine: Engine,
    *,
    subject_id: str | None,
    account: tuple[str, int] | None,
    reason: str,
    actor: str,
    now: datetime,
) -> ErasureResult:
    """Make one person's personal fields and raw bodies unreadable; the tree still verifies."""
    from labledger.storage.erasure import erase as erase_person

    return erase_person(
        engine, subject_id=subject_id, account=account, reason=reason, actor=actor, now=now
    )
