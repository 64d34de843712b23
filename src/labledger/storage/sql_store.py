"""The ledger on SQLite or PostgreSQL through SQLAlchemy Core."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import Connection, Engine, func, select, text

from labledger.core.errors import NotFound, RepositoryShared
from labledger.core.model import (
    CLOCK_SKEW,
    AttemptRecord,
    AuditEvent,
    DeadlineChange,
    DeliveryReport,
    LabAttempt,
    LabSession,
    NewVerification,
    PickedUp,
    PushRecord,
    SessionSpec,
    StoredDelivery,
    VerificationResult,
)
from labledger.core.ports import LedgerWriter
from labledger.core.service import pick_up_attempts
from labledger.forges import parse_recorded_push
from labledger.storage.engine import WRITE_OPTION, translate_db_errors, writer_lock
from labledger.storage.gaps import ChainGap, count_gaps, read_gaps
from labledger.storage.group_commit import BatchSizes, GroupCommit
from labledger.storage.rows import (
    ATTEMPT_BY_ID,
    ATTEMPT_PAGE,
    ATTEMPTS_BY_COMMIT,
    DELIVERY_BY_KEY,
    DELIVERY_BY_PK,
    DELIVERY_WITH_PUSH,
    OWN_ATTEMPTS_BY_DELIVERY,
    PUSH_OF_DELIVERY,
    SESSION_BY_ID,
    AttemptRow,
    DeliveryView,
    attempt_from_row,
    attempt_query,
    attempt_rows,
    delivery_attempt_rows,
    delivery_from_row,
    iso_or_none,
    push_record_from_row,
    read_push_record,
    session_from_row,
    session_query,
    sessions_by_id,
    verification_from_row,
)
from labledger.storage.sql_writer import SqlWriter
from labledger.storage.summary_reads import SessionTally, session_tallies
from labledger.storage.tables import (
    attempts,
    deliveries,
    delivery_bodies,
    lab_sessions,
    log_entries,
    metadata,
    verification_results,
)

__all__ = ["SqlStore", "SqlWriter", "translate_db_errors"]

T = TypeVar("T")
# SQLite writes one transaction at a time anyway. On PostgreSQL a delivery's statements are
# round trips: a few batches at once keep the server busy while each waits for its commit
# (bench/: the throughput scenario at concurrency 32 and 64).
WRITE_LANES = {"sqlite": 1, "postgresql": 8}


class SqlStore:
    """A LedgerStore on SQLAlchemy Core. Reads are plain SELECTs; writes go through SqlWriter."""

    def __init__(
        self, engine: Engine, subscribers: Sequence[str] = (), write_lanes: int | None = None
    ) -> None:
        """`subscribers` name the notification subscribers each new entry is announced to.
        `write_lanes`: group commits that may run at once (WRITE_LANES by database)."""
        self.engine = engine
        self.subscribers = tuple(subscribers)
        self._write_lock = writer_lock(engine)
        lanes = write_lanes or WRITE_LANES.get(engine.dialect.name, 1)
        self.group_commit = GroupCommit(self._transaction, lanes)
        # Entries this store's transactions have queued for the Merkle log and committed: the
        # integrator thread of `serve` starts a round early once enough are waiting.
        self.entries_queued = 0

    @contextmanager
    def transaction(self) -> Iterator[SqlWriter]:
        with translate_db_errors(), self._transaction() as writer:
            yield writer

    def write(self, key: str, work: Callable[[LedgerWriter], T]) -> T:
        """Run `work` in the next group commit (storage/group_commit.py); its answer after the
        commit. Deliveries go this way: under load, many share one transaction."""
        with translate_db_errors():
            return self.group_commit.write(key, work)

    @property
    def commit_sizes(self) -> BatchSizes:
        """How many deliveries each group commit carried (the /metrics histogram)."""
        return self.group_commit.sizes

    def new_writer(self, conn: Connection) -> SqlWriter:
        return SqlWriter(conn, self.subscribers)

    @contextmanager
    def _transaction(self) -> Iterator[SqlWriter]:
        # On SQLite, this process's writers (the group commit, the integrator, the notifier,
        # other transactions) take turns on one lock (engine.writer_lock).
        with self._write_lock, self.engine.connect() as conn:
            conn = conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                writer = self.new_writer(conn)
                yield writer
                queued = writer.flush_log_queue()
            self.entries_queued += queued  # not atomic: a count lost only delays a round

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with translate_db_errors(), self.engine.connect() as conn, conn.begin():
            yield conn

    def ping(self) -> None:
        with self._reading() as conn:
            conn.execute(text("SELECT 1"))

    def find_delivery(self, forge: str, delivery_id: str) -> StoredDelivery | None:
        with self._reading() as conn:
            row = conn.execute(
                DELIVERY_BY_KEY, {"forge": forge, "delivery_id": delivery_id}
            ).one_or_none()
        return delivery_from_row(row) if row else None

    def body_claim(self, forge: str, body_sha256: bytes) -> int | None:
        with self._reading() as conn:
            found: int | None = conn.execute(
                select(delivery_bodies.c.delivery_pk).where(
                    delivery_bodies.c.forge == forge, delivery_bodies.c.body_sha256 == body_sha256
                )
            ).scalar_one_or_none()
        return found

    def delivery_products(self, delivery_pk: int) -> tuple[int | None, tuple[int, ...]]:
        with self._reading() as conn:
            push_id = conn.execute(
                PUSH_OF_DELIVERY, {"delivery_pk": delivery_pk}
            ).scalar_one_or_none()
            ids = conn.execute(
                select(attempts.c.id)
                .where(attempts.c.delivery_pk == delivery_pk)
                .order_by(attempts.c.id)
            ).scalars()
            return push_id, tuple(ids)

    def raw_body(self, forge: str, delivery_id: str) -> bytes:
        with self._reading() as conn:
            blob = conn.execute(
                select(deliveries.c.body_zlib).where(
                    deliveries.c.forge == forge, deliveries.c.delivery_id == delivery_id
                )
            ).scalar_one_or_none()
        if blob is None:
            raise NotFound("delivery", delivery_id)
        return zlib.decompress(blob)

    # -- sessions -----------------------------------------------------------------------

    def get_session(self, session_id: int) -> LabSession:
        with self._reading() as conn:
            return _session(conn, session_id)

    def list_sessions(
        self, *, lab_id: str | None = None, after: int = 0, limit: int = 100
    ) -> list[LabSession]:
        query = session_query().where(lab_sessions.c.id > after)
        if lab_id is not None:
            query = query.where(lab_sessions.c.lab_id == lab_id)
        with self._reading() as conn:
            rows = conn.execute(query.order_by(lab_sessions.c.id).limit(limit))
            return [session_from_row(r) for r in rows]

    def list_lab_ids(self, limit: int = 1000) -> list[str]:
        """The labs that have sessions, in order of their first session."""
        first = func.min(lab_sessions.c.id)
        query = select(lab_sessions.c.lab_id).group_by(lab_sessions.c.lab_id).order_by(first)
        with self._reading() as conn:
            return [row.lab_id for row in conn.execute(query.limit(limit))]

    # -- attempts -----------------------------------------------------------------------
    # Each API read runs in one read transaction: one pool checkout, and every part of the
    # answer (the session, its attempts) comes from the same snapshot.

    def session_attempts(
        self, session_id: int, *, after: int = 0, limit: int = 100
    ) -> list[LabAttempt]:
        with self._reading() as conn:
            return [attempt_from_row(r) for r in _page(conn, session_id, after, limit)]

    def session_page(
        self, session_id: int, *, after: int = 0, limit: int = 100
    ) -> tuple[LabSession, list[AttemptRow]]:
        """A session and a page of its attempts in ledger order; NotFound for no session."""
        with self._reading() as conn:
            return _session(conn, session_id), _page(conn, session_id, after, limit)

    def attempts_by_commit(self, commit_sha: str) -> list[LabAttempt]:
        return [attempt_from_row(r) for r in self.commit_attempts(commit_sha)[0]]

    def commit_attempts(self, commit_sha: str) -> tuple[list[AttemptRow], dict[int, LabSession]]:
        """Every attempt of one commit, and the sessions they belong to."""
        with self._reading() as conn:
            found = attempt_rows(conn.execute(ATTEMPTS_BY_COMMIT, {"commit_sha": commit_sha}))
            return found, sessions_by_id(conn, {a.session_id for a in found})

    def attempts_by_id(self, ids: Sequence[int]) -> dict[int, LabAttempt]:
        with self._reading() as conn:
            rows = conn.execute(attempt_query().where(attempts.c.id.in_(list(ids))))
            return {a.id: a for a in map(attempt_from_row, rows)}

    def get_attempt(self, attempt_id: int) -> AttemptRecord:
        with self._reading() as conn:
            row = conn.execute(ATTEMPT_BY_ID, {"attempt_id": attempt_id}).one_or_none()
            if row is None:
                raise NotFound("attempt", attempt_id)
            push = read_push_record(conn, row.push_id)
            delivery = conn.execute(DELIVERY_BY_PK, {"delivery_pk": row.delivery_pk}).one()
        return AttemptRecord(attempt_from_row(row), push, delivery_from_row(delivery))

    def delivery_report(self, forge: str, delivery_id: str) -> DeliveryReport:
        view = self.delivery_view(forge, delivery_id)
        found = tuple(attempt_from_row(r) for r in view.attempts)
        return DeliveryReport(view.delivery, view.push, found)

    def delivery_view(self, forge: str, delivery_id: str) -> DeliveryView:
        """What one delivery produced and the sessions of its attempts; NotFound if unknown."""
        with self._reading() as conn:
            key = {"forge": forge, "delivery_id": delivery_id}
            row = conn.execute(DELIVERY_WITH_PUSH, key).one_or_none()
            if row is None:
                raise NotFound("delivery", delivery_id)
            if row.push_id is None:  # every attempt belongs to a push: none without one
                return DeliveryView(delivery_from_row(row), None, [], {})
            push = push_record_from_row(conn, row, row.push_id)
            found = delivery_attempt_rows(
                conn.execute(OWN_ATTEMPTS_BY_DELIVERY, {"delivery_pk": row.id}), push
            )
            sessions = sessions_by_id(conn, {a.session_id for a in found})
        return DeliveryView(delivery_from_row(row), push, found, sessions)

    def create_session(
        self,
        spec: SessionSpec,
        actor: str,
        now: datetime,
        *,
        allow_shared_repository: bool = True,
    ) -> LabSession:
        return self.open_sessions(
            [spec], actor, now, allow_shared_repository=allow_shared_repository
        )[0].session

    def open_sessions(
        self,
        specs: Sequence[SessionSpec],
        actor: str,
        now: datetime,
        *,
        allow_shared_repository: bool = True,
    ) -> list[PickedUp]:
        """Create the sessions in one transaction (all or none), each picking up the
        attempts of the pushes already recorded inside its window (invariant 11). Callers
        acting on a request (the API, `sessions create`) pass the request's
        allow_shared_repository: a second session of a lab on one repository is then
        refused, checked in the creating transaction."""
        with self.transaction() as tx:
            opened = []
            for spec in specs:
                if not allow_shared_repository:
                    shared = tx.lab_sessions_on_repository(spec)
                    if shared:
                        raise RepositoryShared(spec.lab_id, spec.repository_id, shared[0])
                opened.append(_open_session(tx, spec, actor, now))
            return opened

    # -- verification results and deadline changes -------------------------------------

    def record_verification(self, report: NewVerification) -> tuple[VerificationResult, bool]:
        """Append a result; a repeat of its key answers the stored one (created=False).

        The unique key decides (INSERT ... ON CONFLICT DO NOTHING); the caller compares the
        stored result with the repeat to tell a retry from a conflict.
        """
        self.get_attempt_session_id(report.attempt_id)
        with self.transaction() as tx:
            result_id = tx.insert_verification(report)
        if result_id is not None:
            return VerificationResult(result_id, report), True
        with self._reading() as conn:
            row = conn.execute(
                select(verification_results).where(
                    verification_results.c.attempt_id == report.attempt_id,
                    verification_results.c.verifier == report.verifier,
                    verification_results.c.run_id == report.run_id,
                )
            ).one()
        return verification_from_row(row), False

    def get_attempt_session_id(self, attempt_id: int) -> int:
        with self._reading() as conn:
            found: int | None = conn.execute(
                select(attempts.c.session_id).where(attempts.c.id == attempt_id)
            ).scalar_one_or_none()
        if found is None:
            raise NotFound("attempt", attempt_id)
        return found

    def verifications(self, attempt_ids: Sequence[int]) -> list[VerificationResult]:
        """Every result reported for these attempts, in ledger order."""
        found: list[VerificationResult] = []
        ids = list(attempt_ids)
        with self._reading() as conn:
            for start in range(0, len(ids), 500):
                rows = conn.execute(
                    select(verification_results)
                    .where(verification_results.c.attempt_id.in_(ids[start : start + 500]))
                    .order_by(verification_results.c.id)
                )
                found.extend(verification_from_row(r) for r in rows)
        return sorted(found, key=lambda r: r.id)

    def verifications_by_id(self, ids: Sequence[int]) -> dict[int, VerificationResult]:
        with self._reading() as conn:
            rows = conn.execute(
                select(verification_results).where(verification_results.c.id.in_(list(ids)))
            )
            return {r.id: verification_from_row(r) for r in rows}

    def change_deadline(
        self,
        session_id: int,
        changes: dict[str, datetime | None],
        reason: str,
        actor: str,
        now: datetime,
        check: Callable[[SessionSpec], None],
    ) -> LabSession:
        return self.apply_deadline_change(session_id, changes, reason, actor, now, check).session

    def apply_deadline_change(
        self,
        session_id: int,
        changes: dict[str, datetime | None],
        reason: str,
        actor: str,
        now: datetime,
        check: Callable[[SessionSpec], None],
    ) -> PickedUp:
        """Append a deadline change (and its audit event); `changes` holds due_at/closes_at.

        Omitted keys keep the current effective value; `check` validates the resulting spec.
        Pushes the wider window now covers yield their attempts in the same transaction.
        """
        with self.transaction() as tx:
            current = tx.get_session(session_id)
            spec = replace(
                current.spec,
                due_at=changes.get("due_at", current.spec.due_at),
                closes_at=changes.get("closes_at", current.spec.closes_at),
            )
            check(spec)
            change = DeadlineChange(session_id, spec.due_at, spec.closes_at, reason, actor, now)
            change_id = tx.insert_deadline_change(change)
            widened = replace(current, spec=spec)
            picked = pick_up_attempts(tx, widened, parse_recorded_push, now)
            tx.append_audit(
                AuditEvent(
                    actor=actor,
                    action="session.deadline_changed",
                    target_type="session",
                    target_id=str(session_id),
                    details={
                        "change_id": change_id,
                        "reason": reason,
                        "due_at": iso_or_none(spec.due_at),
                        "closes_at": iso_or_none(spec.closes_at),
                        "previous_due_at": iso_or_none(current.spec.due_at),
                        "previous_closes_at": iso_or_none(current.spec.closes_at),
                        "picked_up_attempts": len(picked),
                    },
                    occurred_at=now,
                )
            )
        return PickedUp(self.get_session(session_id), picked)

    def all_session_attempts(self, session_id: int) -> list[LabAttempt]:
        """Every attempt of a session in ledger order (a timeline, a test); summaries use
        session_tallies, whose cost does not grow with them."""
        found: list[LabAttempt] = []
        while page := self.session_attempts(
            session_id, after=found[-1].id if found else 0, limit=1000
        ):
            found.extend(page)
        return found

    def session_tallies(
        self,
        *,
        lab_id: str | None = None,
        session_id: int | None = None,
        after: int = 0,
        limit: int | None = None,
        skew: timedelta = CLOCK_SKEW,
    ) -> list[SessionTally]:
        """What the summaries of a page of sessions show (storage/summary_reads.py), read in
        one transaction in a fixed number of statements."""
        with self._reading() as conn:
            return session_tallies(
                conn, lab_id=lab_id, session_id=session_id, after=after, limit=limit, skew=skew
            )

    # -- the change feed ----------------------------------------------------------------

    def log_entries_after(
        self, position: int, kinds: Sequence[str], limit: int
    ) -> list[tuple[int, str, int]]:
        """(leaf_index, kind, id) of integrated entries at or after `position`, leaf order.

        Leaf indexes are gap-free and never change, so a consumer that keeps the position
        after its last entry sees every entry exactly once.
        """
        with self._reading() as conn:
            rows = conn.execute(
                select(log_entries.c.leaf_index, log_entries.c.entry_type, log_entries.c.entry_id)
                .where(
                    log_entries.c.leaf_index >= position,
                    log_entries.c.entry_type.in_(list(kinds)),
                )
                .order_by(log_entries.c.leaf_index)
                .limit(limit)
            )
            return [(r.leaf_index, r.entry_type, r.entry_id) for r in rows]

    # -- gaps in push chains ---------------------------------------------------------------

    def push_chain_gaps(
        self, *, forge: str | None = None, repository_id: int | None = None
    ) -> list[ChainGap]:
        """Open gaps, oldest push first (storage/gaps.py says what a gap is)."""
        with self._reading() as conn:
            return read_gaps(conn, forge, repository_id)

    def count_push_chain_gaps(self) -> int:
        with self._reading() as conn:
            return count_gaps(conn)

    def session_gaps(self, session: LabSession) -> int:
        """Open gaps on the session's repository in branches it follows."""
        found = self.push_chain_gaps(
            forge=session.spec.forge, repository_id=session.spec.repository_id
        )
        return sum(1 for g in found if g.branch is not None and session.matches_branch(g.branch))

    def log_head(self) -> int:
        """The highest leaf index integrated so far, -1 for an empty log."""
        with self._reading() as conn:
            head = conn.execute(select(func.max(log_entries.c.leaf_index))).scalar_one()
        return -1 if head is None else int(head)

    def push_record(self, push_id: int) -> PushRecord:
        with self._reading() as conn:
            return read_push_record(conn, push_id)

    def count_rows(self) -> dict[str, int]:
        """Row counts per table, for tests, health and the CLI."""
        with self._reading() as conn:
            return {
                t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in metadata.sorted_tables
            }


def _open_session(tx: SqlWriter, spec: SessionSpec, actor: str, now: datetime) -> PickedUp:
    session = tx.insert_session(spec, now)
    picked = pick_up_attempts(tx, session, parse_recorded_push, now)
    tx.append_audit(
        AuditEvent(
            actor=actor,
            action="session.created",
            target_type="session",
            target_id=str(session.id),
            details={
                "lab_id": spec.lab_id,
                "repository_id": spec.repository_id,
                "picked_up_attempts": len(picked),
            },
            occurred_at=now,
        )
    )
    return PickedUp(session, picked)


def _session(conn: Connection, session_id: int) -> LabSession:
    row = conn.execute(SESSION_BY_ID, {"session_id": session_id}).one_or_none()
    if row is None:
        raise NotFound("session", session_id)
    return session_from_row(row)


def _page(conn: Connection, session_id: int, after: int, limit: int) -> list[AttemptRow]:
    page = {"session_id": session_id, "after": after, "limit": limit}
    return attempt_rows(conn.execute(ATTEMPT_PAGE[conn.dialect.name], page))
