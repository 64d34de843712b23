"""Redeliver what failed: GitHub never retries a webhook by itself (issue 24, part 3).

For each configured hook, the deliveries newer than its reconciled position are read, and every
push event whose GUID the ledger does not hold is redelivered by GitHub through the ordinary
signed webhook path, so nothing unsigned enters. A failed delivery whose GUID the ledger does
hold is left alone: the push was recorded (the failure was the answer's, e.g. GitHub's 10-s
limit) and a redelivery would only answer `duplicate`. The position moves only past a hook whose
every missing push was requested, so a later run retries what this one could not do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from gidgethub import HTTPException
from gidgethub.abc import GitHubAPI
from sqlalchemy import Engine

from labledger.config import ConfigError, Settings
from labledger.core.errors import LedgerError
from labledger.forges.github_api import (
    Backoff,
    GitHubUnavailable,
    deliveries_since,
    describe,
    github_client,
    hook_base,
    redeliver,
)
from labledger.services.backfill import RepositoryReport, backfill_repositories
from labledger.services.discovery import Discovery, parse_discovery, run_discovery
from labledger.storage.reconcile_marks import ReconcileMarks
from labledger.storage.sql_store import SqlStore

Progress = Callable[[str], None]
log = structlog.get_logger("labledger.services.reconcile")


@dataclass
class HookReport:
    """What one run saw, requested and could not do for one hook."""

    hook: str
    seen: int = 0
    pushes: int = 0
    requested: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.error is None and not self.missing

    def line(self) -> str:
        head = (
            f"{self.hook}: saw {self.seen} deliveries ({self.pushes} push), "
            f"requested {len(self.requested)} redeliveries"
        )
        if self.error:
            return f"{head}; could not finish: {self.error}"
        if self.missing:
            return f"{head}; still missing {len(self.missing)}: {', '.join(self.missing)}"
        return head


async def run_reconcile(
    settings: Settings, marks: ReconcileMarks, progress: Progress, backoff: Backoff | None = None
) -> list[HookReport]:
    """One pass over every configured hook, as `labledger reconcile` and `serve` run it."""
    token = settings.require_github_api()
    async with github_client(token, settings.github_api_url, progress, backoff) as api:
        return await reconcile_hooks(api, marks, settings.github_hooks, progress)


async def run_backfill(
    settings: Settings,
    store: SqlStore,
    marks: ReconcileMarks,
    progress: Progress,
    confirm_all: bool = False,
    backoff: Backoff | None = None,
) -> list[RepositoryReport]:
    """`reconcile --activity`: record the pushes GitHub lists and the ledger lacks, and check
    the push times webhooks claimed, for every repository of a GitHub session."""
    token = settings.require_github_api()
    async with github_client(token, settings.github_api_url, progress, backoff) as api:
        return await backfill_repositories(
            api, store, marks, settings.clock_skew, progress, confirm_all
        )


async def reconcile_forever(settings: Settings, marks: ReconcileMarks, every: float) -> None:
    """`serve`'s schedule: a failed pass is logged and tried again at the next interval."""
    while True:
        try:
            for report in await run_reconcile(settings, marks, log.info):
                (log.info if report.complete else log.warning)("reconcile", result=report.line())
        except (LedgerError, ConfigError, GitHubUnavailable, HTTPException) as exc:
            log.warning("reconcile.failed", error=str(exc))
        await asyncio.sleep(every)


def scheduled_syncs(settings: Settings, engine: Engine) -> list[Coroutine[Any, Any, None]]:
    """What `serve` keeps running when LABLEDGER_RECONCILE_INTERVAL_SECONDS is set."""
    every = settings.reconcile_interval_seconds
    if every is None:
        return []
    found = []
    if settings.github_hooks:
        found.append(reconcile_forever(settings, ReconcileMarks(engine), every))
    store = SqlStore(engine, settings.subscriber_names())
    found += [
        discover_forever(settings, store, parse_discovery(e), every)
        for e in settings.session_discovery
    ]
    return found


async def discover_forever(settings: Settings, store: SqlStore, d: Discovery, every: float) -> None:
    """Keep one LABLEDGER_SESSION_DISCOVERY entry's sessions in sync on the reconcile schedule."""
    while True:
        try:
            report = await run_discovery(settings, store, d, log.warning)
            log.info("sessions.discover", result=report.line(d))
        except (LedgerError, ConfigError, GitHubUnavailable, HTTPException) as exc:
            log.warning("sessions.discover.failed", error=str(exc))
        await asyncio.sleep(every)


async def reconcile_hooks(
    api: GitHubAPI, marks: ReconcileMarks, hooks: tuple[str, ...], progress: Progress
) -> list[HookReport]:
    return [await reconcile_hook(api, marks, hook, progress) for hook in hooks]


async def reconcile_hook(
    api: GitHubAPI, marks: ReconcileMarks, hook: str, progress: Progress
) -> HookReport:
    report = HookReport(hook)
    base = hook_base(hook)
    position = await asyncio.to_thread(marks.position, hook)
    try:
        found = await _read_since(api, base, position, lambda n: progress(f"{hook}: {n} read"))
    except (HTTPException, GitHubUnavailable) as exc:
        report.error = f"listing deliveries failed: {describe(exc)}"
        return report
    report.seen = len(found)
    pushes = [d for d in found if d.get("event") == "push"]
    report.pushes = len(pushes)
    held = await asyncio.to_thread(marks.held_guids, "github", [d["guid"] for d in pushes])
    wanted = _unheld_by_guid(pushes, held)
    for n, (guid, delivery) in enumerate(wanted.items(), start=1):
        try:
            await redeliver(api, base, int(delivery["id"]))
            report.requested.append(guid)
        except (HTTPException, GitHubUnavailable) as exc:
            report.missing.append(f"{guid} ({describe(exc)})")
        if n % 50 == 0:
            progress(f"{hook}: {n}/{len(wanted)} redeliveries requested")
    if found and report.complete:
        newest = max(int(d["id"]) for d in found)
        await asyncio.to_thread(marks.advance, hook, newest, datetime.now(UTC))
    return report


async def _read_since(
    api: GitHubAPI, base: str, position: int, progress: Callable[[int], None]
) -> list[Any]:
    found: list[Any] = []
    async for delivery in deliveries_since(api, base, position):
        found.append(delivery)
        if len(found) % 500 == 0:
            progress(len(found))
    return found


def _unheld_by_guid(pushes: list[Any], held: set[str]) -> dict[str, Any]:
    """One delivery per event the ledger lacks (a GUID names the event, not the attempt),
    oldest first, so redeliveries enter the ledger in the order the pushes were made."""
    wanted: dict[str, Any] = {}
    for delivery in sorted(pushes, key=lambda d: int(d["id"])):
        if delivery["guid"] not in held:
            wanted.setdefault(delivery["guid"], delivery)
    return wanted
