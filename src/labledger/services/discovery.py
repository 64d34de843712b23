"""Sessions at course scale: one session per student repository of an organisation (issue 24).

Since GitHub Classroom closed, courses make `<assignment>-<login>` repositories from a template
themselves. The student of a repository is its one direct collaborator with push access who is
not an organisation owner; when the collaborators do not tell, the name's suffix after the
pattern's literal prefix names them: among several pushers it picks one, with none it is looked
up, and it never names someone the collaborators leave out. Sessions are keyed by repository: a
second run adds only new repositories, and a changed due or close date is appended as an
audited deadline change, never an edit. A session opens, unless told otherwise, when its
repository was created, so pushes made before discovery still become attempts (invariant 11).
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from gidgethub import BadRequest
from gidgethub.abc import GitHubAPI

from labledger.config import Settings
from labledger.core.errors import RepositoryShared
from labledger.core.model import LabSession, PickedUp, SessionSpec
from labledger.core.service import check_session_spec
from labledger.forges.github_api import (
    direct_collaborators,
    github_client,
    org_owners,
    org_repositories,
)
from labledger.storage.sql_store import SqlStore

Warn = Callable[[str], None]
ACTOR = "sessions-discover"


@dataclass(frozen=True, slots=True)
class Discovery:
    org: str
    match: str
    lab_id: str
    opens_at: datetime | None = None
    due_at: datetime | None = None
    closes_at: datetime | None = None


@dataclass
class DiscoveryReport:
    created: list[LabSession] = field(default_factory=list)
    picked_up: int = 0
    present: int = 0
    changed: list[int] = field(default_factory=list)
    opens_kept: list[int] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)

    def line(self, d: Discovery) -> str:
        text = (
            f"{d.org}/{d.match} -> {d.lab_id}: created {len(self.created)} sessions "
            f"(picked up {self.picked_up} earlier attempts), {self.present} already present, "
            f"{len(self.changed)} deadline changes appended"
        )
        if self.opens_kept:
            text += (
                f"; --opens-at differs for {len(self.opens_kept)} existing sessions and is kept "
                "as created (a deadline change carries due and close dates only)"
            )
        if self.unresolved:
            text += f"; no student found for {', '.join(self.unresolved)}"
        return text


async def discover_sessions(
    api: GitHubAPI, store: SqlStore, d: Discovery, now: datetime, warn: Warn
) -> DiscoveryReport:
    report = DiscoveryReport()
    # The store is synchronous; off the event loop, so `serve` keeps answering webhooks.
    present = await asyncio.to_thread(_lab_sessions, store, d.lab_id)
    existing = {s.spec.repository_id: s for s in present}
    owners = await org_owners(api, d.org)
    specs = []
    async for repo in org_repositories(api, d.org):
        if not fnmatch.fnmatchcase(repo["name"], d.match):
            continue
        if repo["id"] in existing:
            report.present += 1
            await asyncio.to_thread(_append_change, store, existing[repo["id"]], d, now, report)
            continue
        student = await _student(api, repo, owners, d.match, warn)
        if student is None:
            report.unresolved.append(repo["full_name"])
            continue
        specs.append(_spec(d, repo, student, now))
    opened = await asyncio.to_thread(_open_new, store, d.lab_id, specs, now, report)
    report.created = [p.session for p in opened]
    report.picked_up = sum(len(p.attempt_ids) for p in opened)
    return report


def _open_new(
    store: SqlStore, lab_id: str, specs: list[SessionSpec], now: datetime, report: DiscoveryReport
) -> list[PickedUp]:
    """Open the sessions still missing. Another discovery running at the same moment (a
    second server, a cron job beside `serve`) may create some first: the creating
    transaction checks the lab's sessions on each repository under a lock
    (`allow_shared_repository=False`), so the loser creates none twice; it counts what the
    winner made as present and opens the rest."""
    while specs:
        try:
            return store.open_sessions(specs, ACTOR, now, allow_shared_repository=False)
        except RepositoryShared:
            made = {s.spec.repository_id for s in _lab_sessions(store, lab_id)}
            report.present += sum(1 for spec in specs if spec.repository_id in made)
            specs = [spec for spec in specs if spec.repository_id not in made]
    return []


def _spec(d: Discovery, repo: dict[str, Any], student: int, now: datetime) -> SessionSpec:
    created = repo.get("created_at")
    opens = d.opens_at or (datetime.fromisoformat(created) if created else now)
    spec = SessionSpec(
        d.lab_id, str(student), "github", int(repo["id"]), repo["full_name"], opens, "*",
        d.due_at, d.closes_at,
    )  # fmt: skip
    check_session_spec(spec)
    return spec


async def _student(
    api: GitHubAPI, repo: dict[str, Any], owners: set[int], match: str, warn: Warn
) -> int | None:
    people = await direct_collaborators(api, repo["full_name"])
    pushers = [
        p for p in people if p.get("permissions", {}).get("push") and int(p["id"]) not in owners
    ]
    for p in pushers:
        if p["permissions"].get("admin"):
            warn(
                f"WARNING: {p['login']} holds admin on {repo['full_name']}: they can read its "
                "webhook secret; remove admin and use an organisation hook"
            )
    if len(pushers) == 1:
        return int(pushers[0]["id"])
    login = _suffix(repo["name"], match)
    if pushers:
        # Several pushers (a student may add a friend): only the one the name designates. A
        # name alone never outvotes the collaborators, or renaming a repository would be
        # enough to file one student's work under another's id.
        named = [p for p in pushers if login and p["login"].lower() == login.lower()]
        return int(named[0]["id"]) if len(named) == 1 else None
    return await _user_id(api, login) if login else None


def _suffix(name: str, match: str) -> str | None:
    prefix = re.split(r"[*?\[]", match, maxsplit=1)[0]
    login = name[len(prefix) :] if name.startswith(prefix) else ""
    return login if re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})", login) else None


async def _user_id(api: GitHubAPI, login: str) -> int | None:
    try:
        user = await api.getitem(f"/users/{login}")
    except BadRequest:
        return None
    return int(user["id"])


def _append_change(
    store: SqlStore, session: LabSession, d: Discovery, now: datetime, report: DiscoveryReport
) -> None:
    changes: dict[str, datetime | None] = {}
    if d.due_at is not None and d.due_at != session.spec.due_at:
        changes["due_at"] = d.due_at
    if d.closes_at is not None and d.closes_at != session.spec.closes_at:
        changes["closes_at"] = d.closes_at
    if d.opens_at is not None and d.opens_at != session.spec.opens_at:
        report.opens_kept.append(session.id)
    if changes:
        reason = f"sessions discover {d.org}/{d.match}: dates given on the command line"
        store.apply_deadline_change(session.id, changes, reason, ACTOR, now, check_session_spec)
        report.changed.append(session.id)


def _lab_sessions(store: SqlStore, lab_id: str) -> list[LabSession]:
    found: list[LabSession] = []
    while page := store.list_sessions(lab_id=lab_id, after=found[-1].id if found else 0, limit=500):
        found.extend(page)
    return found


async def run_discovery(
    settings: Settings, store: SqlStore, d: Discovery, warn: Warn
) -> DiscoveryReport:
    token = settings.require_github_api()
    async with github_client(token, settings.github_api_url, warn) as api:
        return await discover_sessions(api, store, d, datetime.now(UTC), warn)


def parse_discovery(entry: str) -> Discovery:
    """One `ORG/GLOB=LAB_ID` entry of LABLEDGER_SESSION_DISCOVERY."""
    target, _, lab_id = entry.partition("=")
    org, _, match = target.partition("/")
    return Discovery(org, match, lab_id)
