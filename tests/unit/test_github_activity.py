"""The parser of pushes read from GitHub's API (forges/github_activity.py), on answers shaped as
GitHub's OpenAPI description shows them (schemas `activity`, `commit-comparison`, `commit`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from labledger.core.errors import MalformedPayload
from labledger.core.model import ZERO_SHA
from labledger.forges import parse_recorded_push, recorded_by
from labledger.forges.github_activity import evidence_body, parse_activity, parse_api_push
from tests.support import sha

REPO = {"id": 1296269, "full_name": "octocat/Hello-World"}


def activity(kind: str = "push", **overrides: Any) -> dict[str, Any]:
    item = {
        "id": 1296269,
        "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
        "before": sha("before"),
        "after": sha("after"),
        "ref": "refs/heads/main",
        "timestamp": "2011-01-26T19:06:43Z",
        "activity_type": kind,
        "actor": {"login": "octocat", "id": 1, "type": "User"},
    }
    return {**item, **overrides}


MONA = {"name": "Monalisa Octocat", "email": "mona@github.com", "date": "2011-04-14T16:00:49Z"}


def api_commit(seed: str) -> dict[str, Any]:
    return {
        "sha": sha(seed),
        "commit": {
            "author": MONA,
            "committer": MONA,
            "message": f"Fix all the bugs ({seed})",
            "tree": {"sha": sha(("tree", seed))},
        },
        "author": {"login": "octocat", "id": 1},
        "committer": None,
        "parents": [],
    }  # fmt: skip


def comparison(*seeds: str, files: tuple[dict[str, Any], ...] = ()) -> dict[str, Any]:
    listed = [api_commit(s) for s in seeds]
    files = list(files)
    return {
        "status": "ahead",
        "total_commits": len(listed),
        "commits": listed,
        "files": files or [],
    }


def test_push_read_from_the_api_carries_githubs_time_and_actor() -> None:
    """A compare's commits become the push's, GitHub's activity timestamp its pushed_at."""
    files = (
        {"filename": "a.py", "status": "added"},
        {"filename": "b.py", "status": "modified"},
        {"filename": "new.py", "status": "renamed", "previous_filename": "old.py"},
    )
    push = parse_api_push(evidence_body(REPO, activity(), compare=comparison("one", files=files)))
    assert push.pushed_at == datetime(2011, 1, 26, 19, 6, 43, tzinfo=UTC)
    assert (push.repository_id, push.sender.id, push.ref) == (1296269, 1, "refs/heads/main")
    [only] = push.carried_commits()
    assert (only.sha, only.author.username, only.committer.username) == (
        sha("one"),
        "octocat",
        None,
    )
    assert only.files.added == ("a.py", "new.py") and only.files.removed == ("old.py",)
    assert push.commit_list_complete


def test_files_of_a_longer_range_are_not_given_to_any_one_commit() -> None:
    """A compare's files belong to the range: with two commits, neither claims them."""
    files = [{"filename": "a.py", "status": "added"}]
    push = parse_api_push(
        evidence_body(REPO, activity(), compare=comparison("x", "y", files=files))
    )
    assert [c.files.added for c in push.carried_commits()] == [(), ()]


def test_created_force_pushed_and_deleted_branches() -> None:
    """The activity type says what the webhook's flags would have said."""
    created = activity("branch_creation", before=None)
    made = parse_api_push(evidence_body(REPO, created, commit=api_commit("head")))
    assert (made.created, made.before, [c.sha for c in made.carried_commits()]) == (
        True, ZERO_SHA, [sha("head")],
    )  # fmt: skip
    forced = parse_api_push(evidence_body(REPO, activity("force_push"), compare=comparison("z")))
    assert forced.rewrites_history
    gone = parse_api_push(evidence_body(REPO, activity("branch_deletion", after=ZERO_SHA)))
    assert gone.deleted and gone.carried_commits() == ()


def test_activity_that_moves_no_branch_is_passed_over_and_malformed_is_named() -> None:
    """Tags are not pushes to a branch; an item without a time is reported, not guessed."""
    assert parse_activity(activity(ref="refs/tags/v1")) is None
    assert parse_activity(activity("pr_merge")) is not None
    with pytest.raises(MalformedPayload) as caught:
        parse_activity(activity(timestamp="2011-01-26T19:06:43"))  # no time zone
    assert caught.value.location == "activity 1296269"


def test_kept_evidence_is_read_by_its_own_parser() -> None:
    """The registry reads API evidence with the API parser, a webhook body with GitHub's."""
    body = evidence_body(REPO, activity(), compare=comparison("one"))
    assert recorded_by("github", body) == "github-api"
    assert recorded_by("github", b'{"ref": "refs/heads/main"}') == "github"
    assert recorded_by("gitea:uni", body) == "gitea"
    parsed = parse_recorded_push("github", body)
    assert parsed is not None and parsed.after == sha("after")
