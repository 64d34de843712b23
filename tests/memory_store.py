"""An in-memory LedgerStore: the core/ports.py protocols kept with dicts, for tests.

It keeps the ports' invariants the way the databases do: a transaction commits whole or not
at all (the writer works on a copy that replaces the state only on success), one writer at a
time, and the unique keys (forge, delivery_id), (forge, body_sha256) and (session_id,
commit_sha) decide "already recorded". Nothing is ever updated or deleted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from labledger.core.model import (
    AuditEvent,
    Delivery,
    LabSession,
    NewAttempt,
    Push,
    RecordedPush,
    SessionSpec,
    StoredDelivery,
)
from labledger.core.service import pick_up_attempts
from labledger.forges import parse_recorded_push

T = TypeVar("T")


@dataclass
class Tables:
    """The rows, in ledger (id) order within each list."""

    deliveries: list[tuple[StoredDelivery, bytes]] = field(default_factory=list)
    bodies: dict[tuple[str, bytes], int] = field(default_factory=dict)  # -> delivery pk
    pushes: list[tuple[int, str, Push, RecordedPush]] = field(default_factory=list)
    sessions: list[LabSession] = field(default_factory=list)
    attempts: list[tuple[int, NewAttempt]] = field(default_factory=list)
    audit: list[AuditEvent] = field(default_factory=list)

    def copy(self) -> Tables:
        """A copy a transaction may change; the rows themselves are frozen values."""
        return Tables(
            list(self.deliveries),
            dict(self.bodies),
            list(self.pushes),
            list(self.sessions),
            list(self.attempts),
            list(self.audit),
        )


class MemoryWriter:
    """One open transaction over a private copy of the tables."""

    def __init__(self, tables: Tables) -> None:
        self.tables = tables

    def insert_delivery(self, delivery: Delivery) -> int | None:
        key = (delivery.forge, delivery.delivery_id)
        if any((d.forge, d.delivery_id) == key for d, _ in self.tables.deliveries):
            return None
        pk = len(self.tables.deliveries) + 1
        stored = StoredDelivery(
            pk,
            delivery.forge,
            delivery.delivery_id,
            delivery.hook_id,
            delivery.event,
            delivery.body_sha256,
            delivery.received_at,
        )
        self.tables.deliveries.append((stored, delivery.body))
        return pk

    def claim_body(self, delivery: Delivery, delivery_pk: int) -> bool:
        key = (delivery.forge, delivery.body_sha256)
        if key in self.tables.bodies:
            return False
        self.tables.bodies[key] = delivery_pk
        return True

    def insert_push(self, delivery_pk: int, forge: str, push: Push) -> int:
        stored, body = self.tables.deliveries[delivery_pk - 1]
        push_id = len(self.tables.pushes) + 1
        recorded = RecordedPush(
            push_id, delivery_pk, push.ref, push.pushed_at, stored.received_at, body
        )
        self.tables.pushes.append((push.repository_id, forge, push, recorded))
        return push_id

    def sessions_for_repository(self, forge: str, repository_id: int) -> list[LabSession]:
        return [
            s
            for s in self.tables.sessions
            if (s.spec.forge, s.spec.repository_id) == (forge, repository_id)
        ]

    def guard_repository(self, forge: str, repository_id: int, *, exclusive: bool) -> None:
        """Transactions already run one at a time (MemoryStore's lock)."""

    def recorded_pushes(self, forge: str, repository_id: int) -> list[RecordedPush]:
        return [
            recorded
            for repo, push_forge, _, recorded in self.tables.pushes
            if (push_forge, repo) == (forge, repository_id)
        ]

    def insert_attempts(self, attempts: Sequence[NewAttempt]) -> list[int]:
        held = {(a.session_id, a.commit.sha) for _, a in self.tables.attempts}
        ids = []
        for attempt in attempts:
            key = (attempt.session_id, attempt.commit.sha)
            if key in held:
                continue
            held.add(key)
            ids.append(len(self.tables.attempts) + 1)
            self.tables.attempts.append((ids[-1], attempt))
        return ids

    def append_audit(self, event: AuditEvent) -> int:
        self.tables.audit.append(event)
        return len(self.tables.audit)

    def insert_session(self, spec: SessionSpec, created_at: datetime) -> LabSession:
        session = LabSession(
            len(self.tables.sessions) + 1, spec, created_at, spec.due_at, spec.closes_at
        )
        self.tables.sessions.append(session)
        return session


class MemoryStore:
    """A LedgerStore in memory; `tables` is the committed state, for assertions."""

    def __init__(self) -> None:
        self.tables = Tables()
        self._lock = threading.Lock()

    @contextmanager
    def transaction(self) -> Iterator[MemoryWriter]:
        with self._lock:
            writer = MemoryWriter(self.tables.copy())
            yield writer
            self.tables = writer.tables

    def write(self, key: str, work: Callable[[MemoryWriter], T]) -> T:
        """Work in a transaction of its own: a store of one writer has nothing to batch with."""
        with self.transaction() as tx:
            return work(tx)

    def find_delivery(self, forge: str, delivery_id: str) -> StoredDelivery | None:
        return next(
            (
                d
                for d, _ in self.tables.deliveries
                if (d.forge, d.delivery_id) == (forge, delivery_id)
            ),
            None,
        )

    def body_claim(self, forge: str, body_sha256: bytes) -> int | None:
        return self.tables.bodies.get((forge, body_sha256))

    def delivery_products(self, delivery_pk: int) -> tuple[int | None, tuple[int, ...]]:
        push_id = next(
            (r.push_id for _, _, _, r in self.tables.pushes if r.delivery_pk == delivery_pk), None
        )
        attempt_ids = tuple(i for i, a in self.tables.attempts if a.delivery_pk == delivery_pk)
        return push_id, attempt_ids

    def create_session(self, spec: SessionSpec, now: datetime) -> LabSession:
        """Open a session that picks up the recorded pushes it takes, as SqlStore's does."""
        with self.transaction() as tx:
            session = tx.insert_session(spec, now)
            pick_up_attempts(tx, session, parse_recorded_push, now)
        return session
