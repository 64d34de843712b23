"""JSON shapes of verification results, deadline changes, summaries and the feed."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from labledger.core.grading import SessionSummary, current_results, overall_status
from labledger.core.model import (
    CLOCK_SKEW,
    AttemptRecord,
    LabSession,
    NewVerification,
    VerificationResult,
)
from labledger.http.schemas import AttemptDetail, AttemptOut, Prose, PushOut


# Scores travel as decimals with at most 3 places and are stored as integer milli-points.
def to_milli(value: Decimal | None) -> int | None:
    return None if value is None else int(value * 1000)


def from_milli(value: int | None) -> Decimal | None:
    return None if value is None else Decimal(value) / 1000


class VerificationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    verifier: str = Field(min_length=1, max_length=100, description="e.g. `autograder`, `ci`")
    run_id: str = Field(
        min_length=1, max_length=200, description="The verifier's own run id: idempotency key"
    )
    status: Literal["passed", "failed", "error"]
    score: Decimal | None = Field(default=None, ge=0, max_digits=15, decimal_places=3)
    max_score: Decimal | None = Field(default=None, gt=0, max_digits=15, decimal_places=3)
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="JSON, at most 16 KiB, no fractional numbers, integers within ±2^53",
    )

    def to_report(self, attempt_id: int, actor: str, now: datetime) -> NewVerification:
        return NewVerification(
            attempt_id=attempt_id,
            verifier=self.verifier,
            run_id=self.run_id,
            status=self.status,
            score_milli=to_milli(self.score),
            max_score_milli=to_milli(self.max_score),
            details=self.details,
            reported_at=now,
            actor=actor,
        )


class VerificationOut(BaseModel):
    id: int = Field(description="Ledger order among results")
    attempt_id: int
    verifier: str
    run_id: str
    status: str
    score: Decimal | None
    max_score: Decimal | None
    details: dict[str, Any]
    reported_at: datetime
    actor: str

    @classmethod
    def of(cls, r: VerificationResult) -> VerificationOut:
        v = r.report
        return cls(
            id=r.id,
            attempt_id=v.attempt_id,
            verifier=v.verifier,
            run_id=v.run_id,
            status=v.status,
            score=from_milli(v.score_milli),
            max_score=from_milli(v.max_score_milli),
            details=v.details,
            reported_at=v.reported_at,
            actor=v.actor,
        )


class AttemptVerifications(BaseModel):
    status: str | None = Field(description="failed > error > passed over the current results")
    current: list[VerificationOut] = Field(description="The newest result per verifier")
    history: list[VerificationOut] = Field(description="Every result, in ledger order")

    @classmethod
    def of(cls, results: list[VerificationResult]) -> AttemptVerifications:
        current = [r for rs in current_results(results).values() for r in rs]
        return cls(
            status=overall_status(current),
            current=[VerificationOut.of(r) for r in current],
            history=[VerificationOut.of(r) for r in results],
        )


class DeadlineChangeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    due_at: AwareDatetime | None = None
    closes_at: AwareDatetime | None = None
    reason: Prose = Field(min_length=1, max_length=2000)

    def changes(self) -> dict[str, datetime | None]:
        """Only the fields given (null included) change; the others keep their value."""
        return {k: getattr(self, k) for k in ("due_at", "closes_at") if k in self.model_fields_set}


class SessionSummaryOut(BaseModel):
    session_id: int
    lab_id: str
    subject_id: str
    forge: str = Field(description="github, gitlab or gitea, with :INSTANCE for a named one")
    repository_id: int
    repository_full_name: str | None
    due_at: datetime | None = Field(description="Effective due date (after extensions)")
    original_due_at: datetime | None
    attempts: int
    late_attempts: int
    counting_attempt: AttemptOut | None = Field(
        description="Newest attempt with trusted time at or before the effective due_at"
    )
    counting_status: str | None
    counting_verifications: list[VerificationOut]
    newest_attempt: AttemptOut | None
    newest_late: bool
    counts_by_unconfirmed_time: bool = Field(
        description="The counting attempt is on time only by a pushed_at the forge has not "
        "confirmed (time_unconfirmed); by its arrival it would be late"
    )
    gaps: int = Field(
        default=0,
        description="Open gaps in the push chains of the session's repository and branches",
    )
    force_pushes: int = Field(
        default=0,
        description="Pushes that rewrote history (forced, neither created nor deleted) and "
        "recorded at least one of the session's attempts",
    )
    unconfirmed_times: int = Field(
        default=0, description="Attempts whose pushed_at the forge has not confirmed"
    )
    api_recorded_attempts: int = Field(
        default=0,
        description="Attempts recorded from the forge's API (recorded_from github-api), "
        "not from a webhook delivery",
    )

    @classmethod
    def of(
        cls,
        s: SessionSummary,
        gaps: int = 0,
        force_pushes: int = 0,
        unconfirmed_times: int = 0,
        api_recorded_attempts: int = 0,
    ) -> SessionSummaryOut:
        session = s.session
        return cls(
            session_id=session.id,
            lab_id=session.spec.lab_id,
            subject_id=session.spec.subject_id,
            forge=session.spec.forge,
            repository_id=session.spec.repository_id,
            repository_full_name=session.spec.repository_full_name,
            due_at=session.spec.due_at,
            original_due_at=session.original_due_at,
            attempts=s.attempts,
            late_attempts=s.late_attempts,
            counting_attempt=AttemptOut.of(s.counting, session, s.skew) if s.counting else None,
            counting_status=s.counting_status,
            counting_verifications=[VerificationOut.of(r) for r in s.counting_results],
            newest_attempt=AttemptOut.of(s.newest, session, s.skew) if s.newest else None,
            newest_late=s.newest_late,
            counts_by_unconfirmed_time=s.counts_by_unconfirmed_time,
            gaps=gaps,
            force_pushes=force_pushes,
            unconfirmed_times=unconfirmed_times,
            api_recorded_attempts=api_recorded_attempts,
        )


class LabSummaryOut(BaseModel):
    lab_id: str
    sessions: list[SessionSummaryOut]
    next_after: int | None = Field(
        default=None, description="Pass as `after` for the next page; null on the last"
    )


CSV_COLUMNS = (
    "session_id",
    "subject_id",
    "repository",
    "due_at",
    "attempts",
    "late_attempts",
    "counting_attempt_id",
    "counting_commit_sha",
    "counting_trusted_time",
    "counting_status",
    "newest_attempt_id",
    "newest_late",
    "counting_time_unconfirmed",
    "counts_by_unconfirmed_time",
    "gaps",
    "forge",
    # New columns go last, so that existing spreadsheets keep their column positions.
    "counting_recorded_from",
    "force_pushes",
    "unconfirmed_times",
    "api_recorded_attempts",
)


def csv_row(s: SessionSummaryOut) -> list[object]:
    counting = s.counting_attempt
    return [
        s.session_id,
        _cell(s.subject_id),
        _cell(s.repository_full_name or str(s.repository_id)),
        s.due_at.isoformat() if s.due_at else "",
        s.attempts,
        s.late_attempts,
        counting.id if counting else "",
        counting.commit_sha if counting else "",
        counting.trusted_time.isoformat() if counting else "",
        s.counting_status or "",
        s.newest_attempt.id if s.newest_attempt else "",
        "true" if s.newest_late else "false",
        _flag(counting.time_unconfirmed) if counting else "",
        _flag(s.counts_by_unconfirmed_time),
        s.gaps,
        s.forge,
        counting.recorded_from if counting else "",
        s.force_pushes,
        s.unconfirmed_times,
        s.api_recorded_attempts,
    ]


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _cell(text: str) -> str:
    # Platform ids are opaque: one starting with = + - @ would run as a spreadsheet formula,
    # and spreadsheets skip a leading TAB, CR or LF to find one (OWASP, CSV injection).
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r", "\n") else text


class FeedItem(BaseModel):
    position: int = Field(description="The entry's leaf index in the Merkle log")
    type: Literal["attempt", "push", "verification"]
    id: int
    attempt: AttemptOut | None = None
    push: PushOut | None = None
    verification: VerificationOut | None = None


class FeedPage(BaseModel):
    items: list[FeedItem]
    next_cursor: str = Field(description="Pass as `after` to read on; store it to resume")


class TimeCheckOut(BaseModel):
    """The newest check of the push's time against GitHub's activity API
    (`labledger reconcile --activity`)."""

    result: Literal["confirmed", "contradicted", "not found"] = Field(
        description="contradicted: GitHub records this push at another time, so the signed "
        "pushed_at is evidence of forgery; not found: GitHub lists no such branch update"
    )
    checked_at: datetime
    claimed_pushed_at: datetime | None
    github_timestamp: datetime | None = None
    activity_id: int | None = None
    meaning: str | None = None


class AttemptDetailOut(AttemptDetail):
    verifications: AttemptVerifications
    time_check: TimeCheckOut | None = Field(
        default=None, description="None until `reconcile --activity` checked the push's time"
    )

    @classmethod
    def with_results(
        cls,
        record: AttemptRecord,
        session: LabSession,
        results: list[VerificationResult],
        skew: timedelta = CLOCK_SKEW,
        time_check: dict[str, Any] | None = None,
    ) -> AttemptDetailOut:
        base = AttemptDetail.of(record, session, skew)
        return cls(
            attempt=base.attempt,
            push=base.push,
            delivery=base.delivery,
            verifications=AttemptVerifications.of(results),
            time_check=TimeCheckOut.model_validate(time_check) if time_check else None,
        )
