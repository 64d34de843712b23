"""Recording deliveries: idempotency, session matching, redelivery answers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from labledger.core.errors import (
    BodyReplayed,
    DeliveryAlreadyRecorded,
    DeliveryConflict,
    InvalidRequest,
)
from labledger.core.leaves import canonical_json
from labledger.core.model import (
    VERIFICATION_STATUSES,
    AuditEvent,
    Delivery,
    LabSession,
    NewAttempt,
    NewVerification,
    Outcome,
    Push,
    RecordResult,
    SessionSpec,
    StoredDelivery,
    branch_of,
    recorded_from,
)
from labledger.core.ports import LedgerStore, LedgerWriter
from labledger.core.text import check_json_values, check_text

SYSTEM_ACTOR = "labledger"


def record_push_delivery(store: LedgerStore, delivery: Delivery, push: Push) -> RecordResult:
    """Record one push delivery exactly once; a redelivery answers as the first receipt did."""
    try:
        key = write_key(delivery, push.repository_id)
        return store.write(key, lambda tx: _record_new(tx, delivery, push))
    except DeliveryAlreadyRecorded:
        return answer_redelivery(store, delivery)
    except BodyReplayed:
        return answer_replay(store, delivery)


def write_key(delivery: Delivery, repository_id: int = 0) -> str:
    """The order deliveries written together take: by repository (the guard each takes),
    then by the delivery's unique key, so that writers batching apart lock in one order."""
    return f"{delivery.forge}\x1f{repository_id:020d}\x1f{delivery.delivery_id}"


def _record_new(tx: LedgerWriter, delivery: Delivery, push: Push) -> RecordResult:
    delivery_pk = tx.insert_delivery(delivery)
    if delivery_pk is None:
        raise DeliveryAlreadyRecorded(delivery.delivery_id)
    if not tx.claim_body(delivery, delivery_pk):
        raise BodyReplayed(delivery.delivery_id)
    tx.guard_repository(delivery.forge, push.repository_id, exclusive=False)
    push_id = tx.insert_push(delivery_pk, delivery.forge, push)
    sessions = tx.sessions_for_repository(delivery.forge, push.repository_id)
    wanted = plan_attempts(push, sessions, push_id, delivery_pk, delivery.received_at)
    attempt_ids = tuple(tx.insert_attempts(wanted))
    reason = None if attempt_ids else why_no_attempt(push, sessions, delivery.received_at)
    tx.append_audit(
        _audit(
            delivery,
            "delivery.recorded",
            push_id=push_id,
            attempts=len(attempt_ids),
            commits_carried=len(push.carried_commits()),
            forced=push.rewrites_history,
            commit_list_complete=push.commit_list_complete,
            **({"no_attempt_reason": reason} if reason else {}),
            # GitLab and Gitea say how many commits they left out; the audit leaf keeps it.
            **({"commits_missing": push.commits_missing} if push.commits_missing else {}),
        )
    )
    return RecordResult(Outcome.RECORDED, delivery.delivery_id, push_id, attempt_ids, reason)


def plan_attempts(
    push: Push,
    sessions: list[LabSession],
    push_id: int,
    delivery_pk: int,
    received_at: datetime,
    picked_up_at: datetime | None = None,
) -> list[NewAttempt]:
    """Every (session, commit) pair this push could add; tags and deletions add none.

    `picked_up_at`: the moment a session created (or widened) later derives them. Such an
    attempt enters the log then, so that is its received_at (`verify` refuses entries older
    than a checkpoint signed before them); the push's trusted time stays its pushed_at.
    """
    branch = push.branch
    if branch is None or push.deleted:
        return []
    trusted_time = push.pushed_at or received_at
    pushed_at, entered_at = push.pushed_at, received_at
    if picked_up_at is not None:
        pushed_at, entered_at = trusted_time, picked_up_at
    return [
        NewAttempt(s.id, commit, branch, push_id, delivery_pk, pushed_at, entered_at)
        for s in sessions
        if s.takes(branch, trusted_time)
        for commit in push.carried_commits()
    ]


def why_no_attempt(push: Push, sessions: list[LabSession], received_at: datetime) -> str:
    """Why a recorded push yielded no attempt, in words a teacher can act on."""
    branch = push.branch
    if branch is None:
        return f"not a branch: {push.ref}"
    if push.deleted:
        return "branch deleted"
    if not sessions:
        return f"no session for repository {push.repository_id}"
    matching = [s for s in sessions if s.matches_branch(branch)]
    if not matching:
        return "branch not matched"
    if not any(s.is_open_at(push.pushed_at or received_at) for s in matching):
        return "outside window"
    if not push.carried_commits():
        return "no commits"
    return "commits already recorded"


def pick_up_attempts(
    tx: LedgerWriter,
    session: LabSession,
    parse_push: Callable[[str, bytes], Push | None],
    now: datetime,
) -> tuple[int, ...]:
    """Attempts are derived facts (invariant 11): the recorded pushes of the session's
    repository inside its window and branches yield them exactly as if it had existed.

    Only a push the session takes is parsed again from its raw body (the commits' details
    live there); a push whose body retention dropped, or of a forge with no parser
    (`parse_push` answers None), is passed over.
    """
    spec = session.spec
    tx.guard_repository(spec.forge, spec.repository_id, exclusive=True)
    wanted: list[NewAttempt] = []
    for recorded in tx.recorded_pushes(spec.forge, spec.repository_id):
        branch = branch_of(recorded.ref)
        if branch is None or not session.takes(branch, recorded.trusted_time):
            continue
        push = parse_push(spec.forge, recorded.body) if recorded.body else None
        if push is None:
            continue
        wanted += plan_attempts(
            push, [session], recorded.push_id, recorded.delivery_pk, recorded.received_at, now
        )
    return tuple(tx.insert_attempts(wanted))


def answer_redelivery(store: LedgerStore, delivery: Delivery) -> RecordResult:
    """Answer a delivery id seen before: duplicate (same event) or conflict (409)."""
    existing = store.find_delivery(delivery.forge, delivery.delivery_id)
    if existing is None:  # pragma: no cover - the unique key said it exists
        raise RuntimeError(f"delivery {delivery.delivery_id} vanished after a unique conflict")
    if not is_same_event(existing, delivery):
        conflict = _audit(
            delivery,
            "delivery.conflict",
            stored_body_sha256=existing.body_sha256.hex(),
            received_body_sha256=delivery.body_sha256.hex(),
        )
        store.write(write_key(delivery), lambda tx: tx.append_audit(conflict))
        raise DeliveryConflict(delivery.delivery_id, existing.body_sha256, delivery.body_sha256)
    push_id, attempt_ids = store.delivery_products(existing.id)
    duplicate = _audit(
        delivery,
        "delivery.duplicate",
        first_received_at=existing.received_at.isoformat(),
        same_body=existing.body_sha256 == delivery.body_sha256,
    )
    store.write(write_key(delivery), lambda tx: tx.append_audit(duplicate))
    return RecordResult(Outcome.DUPLICATE, delivery.delivery_id, push_id, attempt_ids)


def answer_replay(store: LedgerStore, delivery: Delivery) -> RecordResult:
    """A signed body already recorded under another delivery id is that event again: the
    delivery id is not covered by the signature, so anyone who saw the body could replay it."""
    first_pk = store.body_claim(delivery.forge, delivery.body_sha256)
    if first_pk is None:  # pragma: no cover - the unique key said it exists
        raise RuntimeError(f"the body of {delivery.delivery_id} vanished after a unique conflict")
    push_id, attempt_ids = store.delivery_products(first_pk)
    replay = _audit(delivery, "delivery.replay", first_delivery_pk=first_pk)
    store.write(write_key(delivery), lambda tx: tx.append_audit(replay))
    return RecordResult(Outcome.DUPLICATE, delivery.delivery_id, push_id, attempt_ids)


def is_same_event(existing: StoredDelivery, incoming: Delivery) -> bool:
    """GitHub gives every hook subscribed to one event the same delivery id (forge-facts.md).

    So the same id with the same body, or from another hook, is the same event. The same id
    from the same hook (or with no hook id to tell) and another body is a conflict.
    """
    if existing.body_sha256 == incoming.body_sha256:
        return True
    return (
        existing.hook_id is not None
        and incoming.hook_id is not None
        and existing.hook_id != incoming.hook_id
    )


def _audit(delivery: Delivery, action: str, **details: object) -> AuditEvent:
    actor = f"{delivery.forge}-hook:{delivery.hook_id or 'unknown'}"
    if recorded_from(delivery.forge, delivery.delivery_id) == "github-api":
        actor = "github-api"  # read back by `reconcile --activity`, not sent by a hook
    return AuditEvent(
        actor=actor,
        action=action,
        target_type="delivery",
        target_id=delivery.delivery_id,
        details={"event": delivery.event, "body_sha256": delivery.body_sha256.hex(), **details},
        occurred_at=delivery.received_at,
    )


def check_session_spec(spec: SessionSpec) -> None:
    """Refuse sessions whose dates cannot hold together, or whose text holds controls."""
    for field in ("lab_id", "subject_id", "repository_full_name", "branch_glob"):
        check_text(field, getattr(spec, field))
    for name in ("opens_at", "due_at", "closes_at"):
        moment = getattr(spec, name)
        if moment is not None and moment.tzinfo is None:
            raise InvalidRequest(f"{name} must carry a time zone offset")
        try:
            if moment is not None:
                moment.astimezone(UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00+01:00 is before year 1 in UTC
            raise InvalidRequest(f"{name} is outside the representable range in UTC") from None
    if spec.due_at is not None and spec.due_at < spec.opens_at:
        raise InvalidRequest("due_at is before opens_at")
    if spec.closes_at is not None and spec.closes_at < spec.opens_at:
        raise InvalidRequest("closes_at is before opens_at")
    if spec.due_at is not None and spec.closes_at is not None and spec.closes_at < spec.due_at:
        raise InvalidRequest("closes_at is before due_at")
    if spec.repository_id <= 0:
        raise InvalidRequest("repository_id must be the forge's positive numeric repository id")
    if not spec.branch_glob:
        raise InvalidRequest("branch_glob must not be empty (use '*' for every branch)")


MAX_DETAILS_BYTES = 16 * 1024


def check_verification(report: NewVerification) -> None:
    """Refuse results that cannot enter the ledger: unknown status, floats, oversized details."""
    if report.status not in VERIFICATION_STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(VERIFICATION_STATUSES)}")
    if report.score_milli is not None and report.score_milli < 0:
        raise InvalidRequest("score must not be negative")
    if report.max_score_milli is not None and report.max_score_milli <= 0:
        raise InvalidRequest("max_score must be positive")
    check_text("verifier", report.verifier)
    check_text("run_id", report.run_id)
    check_json_values("details", report.details)
    try:
        size = len(canonical_json(report.details))
    except TypeError:
        # Leaves are canonical JSON without floats (docs/verification.md): say so plainly.
        raise InvalidRequest(
            "details must not contain fractional numbers; send them as strings"
        ) from None
    if size > MAX_DETAILS_BYTES:
        raise InvalidRequest(f"details take {size} bytes; the limit is {MAX_DETAILS_BYTES}")
