"""Grading queries: which attempt counts, its current verification status, lateness.

Pure: the store hands in a session (with its effective dates), its attempts in ledger order
and the results reported for them; nothing here reads a clock or a database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from labledger.core.model import (
    CLOCK_SKEW,
    LabAttempt,
    LabSession,
    VerificationResult,
    is_time_unconfirmed,
    recorded_from,
)


@dataclass(frozen=True, slots=True)
class SessionSummary:
    session: LabSession
    attempts: int
    late_attempts: int
    counting: LabAttempt | None  # newest attempt with trusted time <= effective due_at
    counting_results: tuple[VerificationResult, ...]  # its current result per verifier
    newest: LabAttempt | None
    newest_late: bool
    skew: timedelta = CLOCK_SKEW  # what the time marks below were judged with

    @property
    def counts_by_unconfirmed_time(self) -> bool:
        """The counting attempt is on time only by a push time the forge has not confirmed:
        by its arrival it would be late."""
        c = self.counting
        return (
            c is not None
            and is_time_unconfirmed(c.pushed_at, c.received_at, self.skew, self.counting_source)
            and self.session.is_late(c.received_at)
        )

    @property
    def counting_source(self) -> str:
        """How the counting attempt's push reached the ledger (`recorded_from`)."""
        c = self.counting
        return "webhook" if c is None else recorded_from(self.session.spec.forge, c.delivery_id)

    @property
    def counting_status(self) -> str | None:
        return overall_status(self.counting_results)


def current_results(results: Iterable[VerificationResult]) -> dict[int, list[VerificationResult]]:
    """The newest result per (attempt, verifier), by ledger order; grouped by attempt."""
    newest: dict[tuple[int, str], VerificationResult] = {}
    for r in results:
        key = (r.report.attempt_id, r.report.verifier)
        if key not in newest or r.id > newest[key].id:
            newest[key] = r
    grouped: dict[int, list[VerificationResult]] = {}
    for r in sorted(newest.values(), key=lambda r: (r.report.verifier, r.id)):
        grouped.setdefault(r.report.attempt_id, []).append(r)
    return grouped


def overall_status(current: Sequence[VerificationResult]) -> str | None:
    """failed if any verifier failed, else error if any errored, else passed; None if none."""
    statuses = {r.report.status for r in current}
    for status in ("failed", "error", "passed"):
        if status in statuses:
            return status
    return None


@dataclass(frozen=True, slots=True)
class AttemptTally:
    """What a summary needs of a session's attempts, whatever their number: the store
    computes it in SQL (storage/summary_reads.py); `tally` states the same rule over a list."""

    attempts: int
    late_attempts: int
    counting: LabAttempt | None  # newest attempt with trusted time <= effective due_at
    newest: LabAttempt | None


def tally(session: LabSession, attempts: Sequence[LabAttempt]) -> AttemptTally:
    """Ties in trusted time are broken by ledger order (the higher attempt id is newer)."""
    by_time = sorted(attempts, key=lambda a: (a.trusted_time, a.id))
    due = session.spec.due_at
    eligible = [a for a in by_time if due is None or a.trusted_time <= due]
    return AttemptTally(
        attempts=len(attempts),
        late_attempts=sum(session.is_late(a.trusted_time) for a in attempts),
        counting=eligible[-1] if eligible else None,
        newest=by_time[-1] if by_time else None,
    )


def summarize(
    session: LabSession,
    counted: AttemptTally,
    results: Iterable[VerificationResult],
    skew: timedelta = CLOCK_SKEW,
) -> SessionSummary:
    """`results` need only cover the counting attempt: the others' are not shown."""
    counting, newest = counted.counting, counted.newest
    current = current_results(results)
    return SessionSummary(
        session=session,
        attempts=counted.attempts,
        late_attempts=counted.late_attempts,
        counting=counting,
        counting_results=tuple(current.get(counting.id, ())) if counting else (),
        newest=newest,
        newest_late=newest is not None and session.is_late(newest.trusted_time),
        skew=skew,
    )
