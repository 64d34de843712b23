"""Backfill and time checks from GitHub's activity API: `labledger reconcile --activity`.

Past GitHub's 3-day redelivery window a missed push can still be read back: the repository
activity (`GET /repos/{owner}/{repo}/activity`) lists every branch update with GitHub's own
timestamp. For each one the ledger lacks (no recorded push of that ref from `before` to
`after`), the commits are read (a compare, or the one commit of a new branch) and the push is
recorded through the ordinary core path, `record_push_delivery`: the API answers are its raw
body, GitHub's timestamp its trusted time, so it is Merkle-logged, picked up, audited and
re-derived by `verify` like a delivered one (forges/github_activity.py).

The same listing confirms times that webhooks claim: a push whose `pushed_at` lies long before
its receipt (`time_unconfirmed`), or with `confirm_all` the push of every attempt that counts,
is looked up by ref, before and after. The answer (confirmed, contradicted, not found) is an
appended audit event on the push; a contradicted time is evidence of forgery.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from gidgethub import HTTPException
from gidgethub.abc import GitHubAPI

from labledger.core.errors import MalformedPayload
from labledger.core.model import AuditEvent, Delivery, is_zero_sha
from labledger.core.service import SYSTEM_ACTOR, record_push_delivery
from labledger.forges.github_activity import (
    DELIVERY_PREFIX,
    Activity,
    evidence_body,
    parse_activity,
    parse_api_push,
)
from labledger.forges.github_api import (
    GitHubUnavailable,
    commit,
    compare,
    describe,
    push_activity,
    repository,
)
from labledger.storage.reconcile_marks import TIME_CHECKED, ReconcileMarks, TimeClaim
from labledger.storage.sql_store import SqlStore

Progress = Callable[[str], None]
# How far GitHub's webhook `pushed_at` and its activity timestamp of the same push may differ
# and still be one time: both are GitHub's clock, written for one push, in whole seconds.
SAME_TIME = timedelta(seconds=60)


@dataclass
class RepositoryReport:
    """What one run saw, recorded, checked and could not do for one repository."""

    repository: str
    seen: int = 0
    recorded: int = 0
    attempts: int = 0
    checked: dict[str, int] = field(default_factory=dict)
    contradicted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.error is None and not self.missing

    def line(self) -> str:
        head = (
            f"{self.repository}: saw {self.seen} branch updates, recorded {self.recorded} "
            f"missed pushes ({self.attempts} attempts)"
        )
        if self.checked:
            head += "; times " + ", ".join(f"{n} {k}" for k, n in sorted(self.checked.items()))
        if self.contradicted:
            head += f"; CONTRADICTED (evidence of forgery): {', '.join(self.contradicted)}"
        if self.error:
            return f"{head}; could not finish: {self.error}"
        if self.missing:
            return f"{head}; still missing {len(self.missing)}: {', '.join(self.missing)}"
        return head


async def backfill_repositories(
    api: GitHubAPI,
    store: SqlStore,
    marks: ReconcileMarks,
    skew: timedelta,
    progress: Progress,
    confirm_all: bool = False,
) -> list[RepositoryReport]:
    """One pass over every repository of a GitHub session."""
    reports = []
    repositories = await asyncio.to_thread(marks.session_repositories, "github")
    for n, (repo_id, full_name) in enumerate(repositories, start=1):
        report = RepositoryReport(full_name or str(repo_id))
        if len(repositories) > 1:
            progress(f"activity: {report.repository} ({n}/{len(repositories)} repositories)")
        try:
            activity = await _backfill(api, store, marks, repo_id, full_name, report, progress)
            claims = await asyncio.to_thread(marks.time_claims, repo_id, skew, confirm_all)
            await asyncio.to_thread(_check_times, store, activity, claims, report)
        except (HTTPException, GitHubUnavailable) as exc:
            report.error = describe(exc)
        reports.append(report)
    return reports


async def _backfill(
    api: GitHubAPI,
    store: SqlStore,
    marks: ReconcileMarks,
    repo_id: int,
    full_name: str | None,
    report: RepositoryReport,
    progress: Progress,
) -> list[Activity]:
    """Record every branch update GitHub lists that the ledger lacks; returns the list."""
    if full_name is None:
        raise GitHubUnavailable(f"session of repository {repo_id} names no repository")
    repo = await repository(api, full_name)
    if int(repo["id"]) != repo_id:
        raise GitHubUnavailable(f"{full_name} is now repository {repo['id']}, not {repo_id}")
    found = await _activity(api, repo["full_name"], report, progress)
    held = await asyncio.to_thread(marks.held_pushes, "github", repo_id)
    kept = {"id": repo["id"], "full_name": repo["full_name"]}
    for raw, item in reversed(found):  # oldest first: the order the pushes were made
        if (item.ref, item.before, item.after) in held:
            continue
        try:
            body = await _evidence(api, kept, raw, item)
        except (HTTPException, GitHubUnavailable) as exc:
            report.missing.append(f"{item.ref} {item.after[:12]} ({describe(exc)})")
            continue
        made = await asyncio.to_thread(_record, store, item, body)
        report.recorded += 1
        report.attempts += made
        held.add((item.ref, item.before, item.after))
    return [item for _, item in found]


async def _activity(
    api: GitHubAPI, full_name: str, report: RepositoryReport, progress: Progress
) -> list[tuple[Any, Activity]]:
    found = []
    async for raw in push_activity(api, full_name):
        report.seen += 1
        if report.seen % 500 == 0:
            progress(f"{full_name}: {report.seen} activities read")
        try:
            item = parse_activity(raw)
        except MalformedPayload as exc:
            report.missing.append(f"{exc.location}: {exc.problem}")
            continue
        if item is not None:
            found.append((raw, item))
    return found


async def _evidence(api: GitHubAPI, repo: dict[str, Any], raw: Any, item: Activity) -> bytes:
    full_name = repo["full_name"]
    if is_zero_sha(item.after):
        return evidence_body(repo, raw)
    if is_zero_sha(item.before):
        return evidence_body(repo, raw, commit=await commit(api, full_name, item.after))
    return evidence_body(repo, raw, compare=await compare(api, full_name, item.before, item.after))


def _record(store: SqlStore, item: Activity, body: bytes) -> int:
    """Record the push through the core path, as a delivery whose body is the API evidence."""
    delivery = Delivery(
        forge="github",
        delivery_id=f"{DELIVERY_PREFIX}{item.id}",
        hook_id=None,
        event="push",
        body=body,
        body_sha256=hashlib.sha256(body).digest(),
        received_at=datetime.now(UTC),
    )
    return len(record_push_delivery(store, delivery, parse_api_push(body)).attempt_ids)


def time_verdict(claim: TimeClaim, activity: list[Activity]) -> tuple[str, Activity | None]:
    """confirmed / contradicted / not found: GitHub's record of the same branch update."""
    same = [a for a in activity if (a.ref, a.before, a.after) == claim.key]
    if not same:
        return "not found", None
    pushed_at = claim.pushed_at
    for a in same:
        if pushed_at is not None and abs(a.timestamp - pushed_at) <= SAME_TIME:
            return "confirmed", a
    return "contradicted", same[0]


def _check_times(
    store: SqlStore, activity: list[Activity], claims: list[TimeClaim], report: RepositoryReport
) -> None:
    for claim in claims:
        verdict, found = time_verdict(claim, activity)
        report.checked[verdict] = report.checked.get(verdict, 0) + 1
        if verdict == "contradicted":
            report.contradicted.append(f"push {claim.push_id} ({claim.delivery_id})")
        with store.transaction() as tx:
            tx.append_audit(_time_event(claim, verdict, found))


def _time_event(claim: TimeClaim, verdict: str, found: Activity | None) -> AuditEvent:
    details: dict[str, object] = {
        "result": verdict,
        "claimed_pushed_at": claim.pushed_at.isoformat() if claim.pushed_at else None,
        "delivery_id": claim.delivery_id,
    }
    if found is not None:
        details["github_timestamp"] = found.timestamp.astimezone(UTC).isoformat()
        details["activity_id"] = found.id
    if verdict == "contradicted":
        details["meaning"] = (
            "GitHub's activity API records this push at another time: the signed pushed_at "
            "is evidence of forgery"
        )
    elif verdict == "not found":
        details["meaning"] = "GitHub's activity API lists no such branch update"
    return AuditEvent(
        actor=SYSTEM_ACTOR,
        action=TIME_CHECKED,
        target_type="push",
        target_id=str(claim.push_id),
        details=details,
        occurred_at=datetime.now(UTC),
    )
