"""`labledger sessions discover` against the GitHub double, on both databases (issue 24)."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from labledger.cli import main
from labledger.config import Settings
from labledger.services.discovery import Discovery, DiscoveryReport, run_discovery
from labledger.storage.engine import make_engine
from labledger.storage.sql_store import SqlStore
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.github_double import GitHubDouble, collaborator, repository, user
from tests.support import commit, push_payload

ORG = "cs101"
TEACHER = user("prof", 900)
DISCOVER = ["sessions", "discover", "--org", ORG, "--match", "lab1-*", "--lab-id", "lab1"]


def course(github: GitHubDouble) -> None:
    """A course organisation: four lab1 repositories among a hundred and one others."""
    created = "2025-11-20T08:00:00Z"
    repos = [repository(ORG, f"notes-{n}", 5000 + n, created) for n in range(100)]
    repos += [repository(ORG, f"lab1-{who}", 7000 + n, created) for n, who in enumerate(
        ["ada", "bob", "cy", "dan"], start=1
    )]  # fmt: skip
    repos.append(repository(ORG, "lab2-ada", 7100, created))
    github.repos[ORG] = repos
    github.owners[ORG] = [TEACHER]
    github.collaborators.update(
        {
            f"{ORG}/lab1-ada": [collaborator("ada", 101), collaborator("prof", 900, admin=True)],
            f"{ORG}/lab1-bob": [collaborator("bob", 102, admin=True)],
            f"{ORG}/lab1-dan": [collaborator("dan", 104), collaborator("eve", 105)],
        }
    )
    github.users.update({"cy": user("cy", 103), "dan": user("dan", 104)})


def subjects(ledger: Ledger) -> dict[int, str]:
    return {s.spec.repository_id: s.spec.subject_id for s in ledger.store.list_sessions()}


def test_discover_creates_one_session_per_student_repository_idempotently(
    github: GitHubDouble, ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each matching repository gets one session for its student's numeric id; a second run
    adds only new repositories and appends a changed due date as a deadline change."""
    course(github)
    deliver(ledger.store, push_payload([commit(), commit()], repository_id=7001))
    due = "2025-12-01T23:59:00+00:00"
    assert main([*DISCOVER, "--due-at", due]) == 0
    out = capsys.readouterr()
    assert subjects(ledger) == {7001: "101", 7002: "102", 7003: "103", 7004: "104"}
    assert "picked up 2 earlier attempts" in out.out
    assert "WARNING: bob holds admin on cs101/lab1-bob" in out.err
    assert github.requests.count(("GET", f"/orgs/{ORG}/repos")) == 2  # two pages

    github.repos[ORG].append(repository(ORG, "lab1-fay", 7006, "2025-11-21T08:00:00Z"))
    github.collaborators[f"{ORG}/lab1-fay"] = [collaborator("fay", 106)]
    assert main([*DISCOVER, "--due-at", "2025-12-08T23:59:00+00:00"]) == 0
    again = [*DISCOVER, "--due-at", "2025-12-08T23:59:00+00:00", "--opens-at", due]
    assert main(again) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert "created 0 sessions" in last and "0 deadline changes" in last
    assert "--opens-at differs for 5 existing sessions and is kept" in last
    sessions = ledger.store.list_sessions()
    assert subjects(ledger) == {7001: "101", 7002: "102", 7003: "103", 7004: "104", 7006: "106"}
    assert [s.deadline_changes for s in sessions] == [1, 1, 1, 1, 0]
    assert {s.original_due_at.isoformat() for s in sessions[:4] if s.original_due_at} == {due}


def test_discover_never_files_a_repository_under_a_student_its_collaborators_leave_out(
    github: GitHubDouble, ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """A repository renamed after another student, whose pushers are others, gets no session
    for that student: the name alone never outvotes the collaborators."""
    github.repos[ORG] = [repository(ORG, "lab1-victim", 7300, "2025-11-20T08:00:00Z")]
    github.owners[ORG] = [TEACHER]
    github.collaborators[f"{ORG}/lab1-victim"] = [
        collaborator("mallory", 201, admin=True),
        collaborator("trudy", 202),
    ]
    github.users["victim"] = user("victim", 301)
    assert main(DISCOVER) == 1
    assert "no student found for cs101/lab1-victim" in capsys.readouterr().out
    assert ledger.store.list_sessions() == []


def test_two_discoveries_at_once_create_each_session_once(
    github: GitHubDouble, ledger: Ledger
) -> None:
    """Two discovery runs that both found no sessions yet (two servers, or a cron job beside
    `serve`) race to create them: each repository still gets exactly one session."""
    course(github)
    both_listed = threading.Barrier(2, timeout=30)

    def gate(method: str, path: str) -> None:
        if path == f"/orgs/{ORG}/members":  # each run has read the ledger's sessions by now
            both_listed.wait()

    github.before_answer = gate
    settings = Settings.from_env(os.environ)
    reports: list[DiscoveryReport] = []

    def discover() -> None:
        engine = make_engine(ledger.url)
        found = asyncio.run(
            run_discovery(settings, SqlStore(engine), Discovery(ORG, "lab1-*", "lab1"), print)
        )
        reports.append(found)
        engine.dispose()

    runs = [threading.Thread(target=discover) for _ in range(2)]
    for run in runs:
        run.start()
    for run in runs:
        run.join(timeout=60)
    assert sorted(subjects(ledger).values()) == ["101", "102", "103", "104"]
    assert len(ledger.store.list_sessions()) == 4
    assert sorted((len(r.created), r.present) for r in reports) == [(0, 4), (4, 0)]
