"""Core values of the ledger. Frozen, standard library only."""

from __future__ import annotations

import enum
import fnmatch
from dataclasses import dataclass, field
from datetime import datetime, timedelta

ZERO_SHA = "0" * 40


def branch_of(ref: str) -> str | None:
    """The branch a ref names; None for tags and other refs."""
    prefix = "refs/heads/"
    return ref[len(prefix) :] if ref.startswith(prefix) else None


def is_zero_sha(sha: str) -> bool:
    """The null object id that marks a created or deleted ref: 40 zeros, or 64 in SHA-256 repos."""
    return len(sha) in (40, 64) and not sha.strip("0")


@dataclass(frozen=True, slots=True)
class Identity:
    """A name/email pair as *claimed* by a commit or reported for a pusher."""

    name: str | None
    email: str | None
    username: str | None = None


@dataclass(frozen=True, slots=True)
class Account:
    """The authenticated forge account that sent the event; `id` is its stable key."""

    login: str
    id: int


@dataclass(frozen=True, slots=True)
class ChangedFiles:
    added: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Commit:
    """One commit as a push reports it. Everything here except `sha` is a claim."""

    sha: str
    tree_sha: str | None
    message: str
    author: Identity
    committer: Identity
    timestamp: str | None  # verbatim from the payload: the student's clock, never trusted
    distinct: bool
    files: ChangedFiles = field(default_factory=ChangedFiles)


@dataclass(frozen=True, slots=True)
class Push:
    """One ref update reported by a push event."""

    repository_id: int
    repository_full_name: str
    ref: str
    before: str
    after: str
    created: bool
    deleted: bool
    forced: bool
    pusher: Identity
    sender: Account
    pushed_at: datetime | None  # the forge's clock, covered by the webhook signature
    commits: tuple[Commit, ...]
    head_commit: Commit | None
    # GitLab (`total_commits_count`, newest 20 listed) and Gitea (`total_commits`) count the
    # commits beside a capped list; GitHub gives no count (forge-facts.md).
    total_commits: int | None = None

    # GitHub caps commits[] at 2048 with no total count (forge-facts.md): a full list may be cut.
    MAX_LISTED_COMMITS = 2048

    @property
    def commit_list_complete(self) -> bool:
        if self.total_commits is not None:
            return len(self.commits) >= self.total_commits
        return len(self.commits) < self.MAX_LISTED_COMMITS

    @property
    def commits_missing(self) -> int | None:
        """How many commits the forge counted but left out of its list; None without a count."""
        if self.total_commits is None:
            return None
        return max(0, self.total_commits - len(self.commits))

    @property
    def branch(self) -> str | None:
        return branch_of(self.ref)

    @property
    def rewrites_history(self) -> bool:
        # Old captures carry forced=true on creates and deletes too (forge-facts.md).
        return self.forced and not self.created and not self.deleted

    def carried_commits(self) -> tuple[Commit, ...]:
        """The commits this push put on its ref: `commits[]`, plus `head_commit` when absent.

        A branch created at an existing commit, or force-pushed back to an older one, reports
        `commits: []` with the head in `head_commit`; that head is still evidence.
        """
        if self.deleted:
            return ()
        shas = {c.sha for c in self.commits}
        if self.head_commit is not None and self.head_commit.sha not in shas:
            return (*self.commits, self.head_commit)
        return self.commits


@dataclass(frozen=True, slots=True)
class Delivery:
    """One authenticated webhook request, as received."""

    forge: str
    delivery_id: str
    hook_id: str | None
    event: str
    body: bytes
    body_sha256: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """What a course platform asks for when it opens a lab session."""

    lab_id: str
    subject_id: str
    forge: str
    repository_id: int
    repository_full_name: str | None
    opens_at: datetime
    branch_glob: str = "*"
    due_at: datetime | None = None
    closes_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LabSession:
    """A session with its *effective* dates in `spec` (the newest deadline change, if any)."""

    id: int
    spec: SessionSpec
    created_at: datetime
    original_due_at: datetime | None = None
    original_closes_at: datetime | None = None
    deadline_changes: int = 0

    def matches_branch(self, branch: str) -> bool:
        # fnmatch semantics: `*` also matches `/`, so `feature/*` covers nested names.
        return fnmatch.fnmatchcase(branch, self.spec.branch_glob)

    def is_open_at(self, moment: datetime) -> bool:
        if moment < self.spec.opens_at:
            return False
        return self.spec.closes_at is None or moment <= self.spec.closes_at

    def takes(self, branch: str, trusted_time: datetime) -> bool:
        """Whether a push to `branch` at `trusted_time` yields attempts of this session."""
        return self.matches_branch(branch) and self.is_open_at(trusted_time)

    def is_late(self, trusted_time: datetime) -> bool:
        """Lateness against the session's *current* due date, judged by trusted time only."""
        return self.spec.due_at is not None and trusted_time > self.spec.due_at


@dataclass(frozen=True, slots=True)
class NewAttempt:
    """An attempt the service wants recorded; the store's unique key decides if it is new."""

    session_id: int
    commit: Commit
    branch: str
    push_id: int
    delivery_pk: int
    pushed_at: datetime | None
    received_at: datetime


# LABLEDGER_CLOCK_SKEW_SECONDS' default: how far before its first receipt a forge's push time
# may lie and still be taken on the forge's word (contract invariant 9).
CLOCK_SKEW = timedelta(seconds=900)


def is_time_unconfirmed(
    pushed_at: datetime | None,
    received_at: datetime,
    skew: timedelta = CLOCK_SKEW,
    source: str = "webhook",
) -> bool:
    """Whoever holds a webhook secret signs any `pushed_at`: one much older than the delivery's
    arrival is kept but marked, until the forge's API confirms it. Derived at read time from
    the stored times, like lateness. A push read from the forge's API (`source`, see
    `recorded_from`) carries the API's own time, recorded long after by design."""
    return source == "webhook" and pushed_at is not None and received_at - pushed_at > skew


# The delivery id of a push recorded from GitHub's API (`labledger reconcile --activity`);
# GitHub's own delivery ids are GUIDs, and the webhook refuses one with this prefix.
API_DELIVERY_PREFIX = "github-api:"


def recorded_from(forge: str, delivery_id: str) -> str:
    """`github-api` for a push read from GitHub's API, `webhook` for one a forge delivered."""
    api = forge == "github" and delivery_id.startswith(API_DELIVERY_PREFIX)
    return "github-api" if api else "webhook"


@dataclass(frozen=True, slots=True)
class RecordedPush:
    """A push already in the ledger, with the raw body it was parsed from (empty once
    retention dropped it), so that a session created later can derive its attempts."""

    push_id: int
    delivery_pk: int
    ref: str
    pushed_at: datetime | None
    received_at: datetime
    body: bytes

    @property
    def trusted_time(self) -> datetime:
        return self.pushed_at if self.pushed_at is not None else self.received_at


@dataclass(frozen=True, slots=True)
class PickedUp:
    """A session as created or changed, and the attempts it picked up from recorded pushes."""

    session: LabSession
    attempt_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LabAttempt:
    id: int
    session_id: int
    commit: Commit
    branch: str
    sender: Account
    pusher: Identity
    pushed_at: datetime | None
    received_at: datetime
    push_id: int
    delivery_id: str

    @property
    def trusted_time(self) -> datetime:
        return self.pushed_at if self.pushed_at is not None else self.received_at


class Outcome(enum.Enum):
    RECORDED = "recorded"
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class RecordResult:
    """What one delivery produced; a redelivery answers with the same ids."""

    outcome: Outcome
    delivery_id: str
    push_id: int | None
    attempt_ids: tuple[int, ...]
    no_attempt_reason: str | None = None


@dataclass(frozen=True, slots=True)
class StoredDelivery:
    id: int
    forge: str
    delivery_id: str
    hook_id: str | None
    event: str
    body_sha256: bytes
    received_at: datetime


@dataclass(frozen=True, slots=True)
class AuditEvent:
    actor: str
    action: str
    target_type: str
    target_id: str
    details: dict[str, object]
    occurred_at: datetime


@dataclass(frozen=True, slots=True)
class PushRecord:
    """A stored push with the ordered SHAs of every commit it carried."""

    id: int
    delivery_id: str
    forge: str
    repository_id: int
    repository_full_name: str
    ref: str
    before: str
    after: str
    created: bool
    deleted: bool
    forced: bool
    pusher: Identity
    sender: Account
    pushed_at: datetime | None
    received_at: datetime
    commit_shas: tuple[str, ...]
    commit_list_complete: bool


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt with the push and delivery that first recorded it."""

    attempt: LabAttempt
    push: PushRecord
    delivery: StoredDelivery


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one delivery produced."""

    delivery: StoredDelivery
    push: PushRecord | None
    attempts: tuple[LabAttempt, ...]


@dataclass(frozen=True, slots=True)
class DeadlineChange:
    """An appended change of a session's due_at/closes_at; both are the new effective values."""

    session_id: int
    due_at: datetime | None
    closes_at: datetime | None
    reason: str
    actor: str
    changed_at: datetime


VERIFICATION_STATUSES = ("passed", "failed", "error")


@dataclass(frozen=True, slots=True)
class NewVerification:
    """A verifier's report on one attempt; (attempt_id, verifier, run_id) is its idempotency key.

    Scores are integer milli-points (7.5 points = 7500): leaves hold no floats.
    """

    attempt_id: int
    verifier: str
    run_id: str
    status: str
    score_milli: int | None
    max_score_milli: int | None
    details: dict[str, object]
    reported_at: datetime
    actor: str

    def same_report(self, other: NewVerification) -> bool:
        """Whether a repeat carries the same result (times and actor may differ)."""
        return (self.status, self.score_milli, self.max_score_milli, self.details) == (
            other.status,
            other.score_milli,
            other.max_score_milli,
            other.details,
        )


@dataclass(frozen=True, slots=True)
class VerificationResult:
    id: int
    report: NewVerification
