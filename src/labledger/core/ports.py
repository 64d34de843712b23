"""What the core needs from storage. Each store must keep these invariants itself."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

from labledger.core.model import (
    AuditEvent,
    Delivery,
    LabSession,
    NewAttempt,
    Push,
    RecordedPush,
    StoredDelivery,
)

T = TypeVar("T")


class LedgerWriter(Protocol):
    """One open transaction. Everything written through it commits together or not at all."""

    def insert_delivery(self, delivery: Delivery) -> int | None:
        """Insert the delivery; None when UNIQUE(forge, delivery_id) already holds it.

        The database's unique key decides, never a prior read: two racing inserts of one
        delivery id yield exactly one row.
        """
        ...

    def claim_body(self, delivery: Delivery, delivery_pk: int) -> bool:
        """Claim the delivery's body for it; False when UNIQUE(forge, body_sha256) already
        holds the body under another delivery (a replay). The unique key decides."""
        ...

    def insert_push(self, delivery_pk: int, forge: str, push: Push) -> int:
        """Insert the push and the ordered list of every commit it carried."""
        ...

    def sessions_for_repository(self, forge: str, repository_id: int) -> list[LabSession]: ...

    def guard_repository(self, forge: str, repository_id: int, *, exclusive: bool) -> None:
        """Until commit, order this transaction against others on the repository: recording
        a push (shared) and picking up its pushes for a session (exclusive). Without it, a
        push and its session committing at once could each miss the other."""
        ...

    def recorded_pushes(self, forge: str, repository_id: int) -> list[RecordedPush]:
        """Every push recorded for the repository, in ledger (id) order."""
        ...

    def insert_attempts(self, attempts: Sequence[NewAttempt]) -> list[int]:
        """Insert the attempts; the ids of those inserted, in ledger (id) order.

        An attempt UNIQUE(session_id, commit_sha) already holds is skipped and has no id.
        """
        ...

    def append_audit(self, event: AuditEvent) -> int: ...


class LedgerStore(Protocol):
    """Append-only storage: nothing written through a LedgerWriter is ever updated or deleted."""

    def transaction(self) -> AbstractContextManager[LedgerWriter]:
        """A write transaction of its own."""
        ...

    def write(self, key: str, work: Callable[[LedgerWriter], T]) -> T:
        """Run `work` atomically and return (or raise) what it did once it is committed.

        The store may commit it together with other work waiting at that moment: each runs
        alone in its own savepoint, so work that raises leaves nothing and the rest commits.
        Nothing is answered before the commit. Work sharing a transaction runs in ascending
        `key` order: writers that batch on their own take shared keys in one order.
        """
        ...

    def find_delivery(self, forge: str, delivery_id: str) -> StoredDelivery | None: ...

    def body_claim(self, forge: str, body_sha256: bytes) -> int | None:
        """The delivery (primary key) that first recorded this body, if any."""
        ...

    def delivery_products(self, delivery_pk: int) -> tuple[int | None, tuple[int, ...]]:
        """The push id and the attempt ids (ledger order) first recorded by a delivery."""
        ...
