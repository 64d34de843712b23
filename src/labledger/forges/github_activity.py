"""Pushes recorded from GitHub's REST API: the evidence kept, and the push it makes (issue 24).

A push GitHub never delivered is rebuilt from three API answers, kept together as the
delivery's raw body so that pick-up and `verify` read it again through this parser:
`repos/get` (the repository, by which numeric id it is), one item of `repos/list-activities`
(`GET /repos/{owner}/{repo}/activity`: id, ref, before, after, timestamp, activity_type,
actor) and either `repos/compare-commits` (`GET .../compare/{before}...{after}`: commits,
total_commits, files) or, for a branch created at a commit, `repos/get-commit`. No network
code here; shapes from `github/rest-api-description` (schemas `activity`,
`commit-comparison`, `commit`, `diff-entry`).

Trust: the API answers over TLS with labledger's own credentials, so the activity timestamp is
GitHub's own clock, not a claim a webhook secret could sign. A compare lists the commits of
the whole range and the files of the whole range: a push of one commit gets that commit's
files, a longer push's commits carry none (docs/completeness.md).
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, ValidationError

from labledger.core.errors import MalformedPayload
from labledger.core.model import (
    API_DELIVERY_PREFIX,
    ZERO_SHA,
    Account,
    ChangedFiles,
    Commit,
    Identity,
    Push,
    is_zero_sha,
)
from labledger.forges.github import API_EVIDENCE_PREFIX, RepoId, Sha, Text

SOURCE = "github-api"
# Every evidence body starts with API_EVIDENCE_PREFIX, and no webhook body may (forges/github.py
# refuses it), so a recorded body names the parser that reads it; likewise the delivery id.
EVIDENCE_PREFIX = API_EVIDENCE_PREFIX + b':"github-api"'
DELIVERY_PREFIX = API_DELIVERY_PREFIX
# Every activity that moves a branch (a merge moves its base branch and sends a push event).
PUSH_ACTIVITIES = (
    "push",
    "force_push",
    "branch_creation",
    "branch_deletion",
    "pr_merge",
    "merge_queue_merge",
)


def _zero_if_null(sha: object) -> object:
    # GitHub's web view shows a created branch's `before` as null; the API schema says a SHA.
    return ZERO_SHA if sha is None else sha


class _Api(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _User(_Api):
    login: Text
    id: RepoId


class Activity(_Api):
    """One item of `repos/list-activities` (schema `activity`)."""

    id: RepoId
    ref: Text
    before: Annotated[Sha, BeforeValidator(_zero_if_null)]
    after: Annotated[Sha, BeforeValidator(_zero_if_null)]
    timestamp: AwareDatetime
    activity_type: Text
    actor: _User | None = None


class _GitPerson(_Api):
    name: Text | None = None
    email: Text | None = None
    date: Text | None = None


class _Tree(_Api):
    sha: Sha


class _GitCommit(_Api):
    message: Text = ""
    author: _GitPerson | None = None
    committer: _GitPerson | None = None
    tree: _Tree


class _DiffEntry(_Api):
    filename: Text
    status: Text
    previous_filename: Text | None = None


class _Commit(_Api):
    sha: Sha
    commit: _GitCommit
    author: _User | None = None
    committer: _User | None = None
    files: list[_DiffEntry] = []


class _Comparison(_Api):
    total_commits: int
    commits: list[_Commit]
    files: list[_DiffEntry] = []


class _Repository(_Api):
    id: RepoId
    full_name: Text


class _Evidence(_Api):
    labledger_evidence: Literal["github-api"]
    repository: _Repository
    activity: Activity
    compare: _Comparison | None = None
    commit: _Commit | None = None


def evidence_body(
    repository: dict[str, Any],
    activity: dict[str, Any],
    compare: dict[str, Any] | None = None,
    commit: dict[str, Any] | None = None,
) -> bytes:
    """The raw body kept for a push recorded from the API: the answers it was made from."""
    kept: dict[str, Any] = {"labledger_evidence": SOURCE, "repository": repository}
    kept["activity"] = activity
    if compare is not None:
        kept["compare"] = compare
    if commit is not None:
        kept["commit"] = commit
    return json.dumps(kept, separators=(",", ":"), ensure_ascii=False).encode()


def is_evidence(body: bytes) -> bool:
    return body.startswith(EVIDENCE_PREFIX)


def parse_activity(item: Any) -> Activity | None:
    """An activity item as a value; None for what does not move a branch (a tag). Raises
    MalformedPayload for an item GitHub answered malformed."""
    if not isinstance(item, dict) or item.get("activity_type") not in PUSH_ACTIVITIES:
        return None
    if not str(item.get("ref", "")).startswith("refs/heads/"):
        return None
    try:
        return Activity.model_validate(item)
    except ValidationError as exc:
        raise MalformedPayload(_first_problem(exc), f"activity {item.get('id')}") from None


def parse_api_push(body: bytes) -> Push:
    """The push a kept evidence body makes, or MalformedPayload saying what is wrong."""
    try:
        kept = _Evidence.model_validate_json(body)
    except ValidationError as exc:
        raise MalformedPayload(_first_problem(exc)) from None
    a = kept.activity
    deleted = a.activity_type == "branch_deletion" or is_zero_sha(a.after)
    commits: tuple[Commit, ...] = ()
    head = None
    total = None
    if kept.compare is not None and not deleted:
        listed = kept.compare.commits
        files = kept.compare.files if len(listed) == 1 else []
        commits = tuple(_commit(c, files) for c in listed)
        total = kept.compare.total_commits
    elif kept.commit is not None and not deleted:
        head = _commit(kept.commit, kept.commit.files)
    actor = a.actor or _User(login="ghost", id=10137)  # GitHub's account for deleted users
    return Push(
        repository_id=kept.repository.id,
        repository_full_name=kept.repository.full_name,
        ref=a.ref,
        before=a.before,
        after=a.after,
        created=a.activity_type == "branch_creation" or is_zero_sha(a.before),
        deleted=deleted,
        forced=a.activity_type == "force_push",
        pusher=Identity(actor.login, None, actor.login),
        sender=Account(actor.login, actor.id),
        pushed_at=a.timestamp.astimezone(UTC),
        commits=commits,
        head_commit=head,
        total_commits=total,
    )


def _first_problem(exc: ValidationError) -> str:
    first = exc.errors(include_url=False, include_input=False)[0]
    return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"


def _commit(c: _Commit, files: list[_DiffEntry]) -> Commit:
    git = c.commit
    return Commit(
        sha=c.sha,
        tree_sha=git.tree.sha,
        message=git.message,
        author=_person(git.author, c.author),
        committer=_person(git.committer, c.committer),
        timestamp=git.author.date if git.author else None,
        distinct=True,
        files=_changed(files),
    )


def _person(git: _GitPerson | None, account: _User | None) -> Identity:
    login = account.login if account else None
    return Identity(git.name if git else None, git.email if git else None, login)


def _changed(files: list[_DiffEntry]) -> ChangedFiles:
    added: list[str] = []
    modified: list[str] = []
    removed: list[str] = []
    for f in files:
        if f.status == "added" or f.status == "copied":
            added.append(f.filename)
        elif f.status == "removed":
            removed.append(f.filename)
        elif f.status == "renamed":  # as a push event shows a rename: one added, one removed
            added.append(f.filename)
            if f.previous_filename:
                removed.append(f.previous_filename)
        else:
            modified.append(f.filename)
    return ChangedFiles(tuple(added), tuple(modified), tuple(removed))
