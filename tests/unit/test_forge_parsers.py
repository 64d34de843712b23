"""The GitLab and Gitea/Forgejo push parsers on the public examples and on generated payloads."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labledger.core.errors import MalformedPayload
from labledger.core.model import ZERO_SHA, Push
from labledger.forges.gitea import parse_gitea_push
from labledger.forges.gitlab import parse_gitlab_push
from tests.forge_support import (
    fixture_json,
    gitea_commit,
    gitea_payload,
    gitlab_commit,
    gitlab_payload,
)

PROPERTY = settings(max_examples=60, deadline=None)
_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40)
_paths = st.lists(_text.filter(bool), max_size=4)


def _body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


def _gitlab(payload: dict[str, Any], kind: str = "push") -> Push:
    return parse_gitlab_push(_body(payload), kind)


def test_gitlab_docs_push_example_is_parsed_with_its_project_pusher_and_truncation() -> None:
    """GitLab's own example: project 15, user 4, two of four commits listed."""
    push = _gitlab(fixture_json("gitlab", "gitlab-docs-push-hook.json"))
    assert (push.repository_id, push.repository_full_name) == (15, "mike/diaspora")
    assert (push.sender.id, push.sender.login, push.pusher.email) == (
        4,
        "jsmith",
        "john@example.com",
    )
    assert [c.sha for c in push.commits][-1] == push.after
    assert push.commits[0].files.added == ("CHANGELOG",)
    assert (push.commit_list_complete, push.commits_missing) == (False, 2)
    assert push.pushed_at is None and push.branch == "master"


def test_gitlab_docs_tag_push_example_is_a_created_tag_with_no_branch() -> None:
    """A tag push: `before` zeros mark creation, no branch, nothing carried as an attempt."""
    push = _gitlab(fixture_json("gitlab", "gitlab-docs-tag-push-hook.json"), "tag_push")
    assert push.created and not push.deleted and push.branch is None
    # The example has no user_username: the display name stands in as the login.
    assert (push.sender.login, push.sender.id) == ("John Smith", 1)
    assert push.commit_list_complete


def test_gitlab_event_header_and_object_kind_must_agree() -> None:
    """A Push Hook header on a tag_push body (or the reverse) is refused, not guessed."""
    with pytest.raises(MalformedPayload, match="object_kind"):
        _gitlab(fixture_json("gitlab", "gitlab-docs-tag-push-hook.json"), "push")


def test_gitlab_branch_deletion_carries_nothing() -> None:
    """`after` zeros and no checkout_sha: a deletion that adds no commit."""
    push = _gitlab(gitlab_payload([], after=ZERO_SHA))
    assert push.deleted and push.carried_commits() == ()


def test_gitlab_branch_created_at_an_existing_commit_carries_its_head() -> None:
    """`commits: []` with a checkout_sha: the head the branch now points at is still evidence."""
    head = gitlab_commit("old")["id"]
    push = _gitlab(gitlab_payload([], before=ZERO_SHA, after=head))
    assert push.created and [c.sha for c in push.carried_commits()] == [head]


def test_gitlab_total_count_below_the_listed_commits_is_refused() -> None:
    """A count smaller than the list is a contradiction, not a truncation."""
    with pytest.raises(MalformedPayload, match="total_commits_count"):
        _gitlab(gitlab_payload([gitlab_commit(1), gitlab_commit(2)], total=1))


def test_gitlab_nulls_where_gitlab_may_send_them_are_accepted() -> None:
    """Null file lists and a missing author parse as empty claims."""
    payload = gitlab_payload([gitlab_commit(1, added=None, modified=None, removed=None)])
    del payload["commits"][0]["author"]
    push = _gitlab(payload)
    assert push.commits[0].files.added == () and push.commits[0].author.name is None


def test_gitea_docs_push_example_is_parsed_without_flags_or_count() -> None:
    """Gitea's example: no created/deleted/forced, no total, no head_commit."""
    push = parse_gitea_push(_body(fixture_json("gitea", "gitea-docs-push-webhook.json"))).push
    assert (push.repository_id, push.sender.id, push.sender.login) == (140, 1, "gitea")
    assert not (push.created or push.deleted or push.forced)
    assert push.total_commits is None and push.commit_list_complete
    assert push.commits[0].committer.username == "gitea" and push.pushed_at is None


@pytest.mark.parametrize(
    ("before", "after", "created", "deleted"),
    [(ZERO_SHA, "a" * 40, True, False), ("b" * 40, ZERO_SHA, False, True)],
)
def test_gitea_creation_and_deletion_are_derived_from_zero_shas(
    before: str, after: str, created: bool, deleted: bool
) -> None:
    """Without flags, zero SHAs say what happened to the ref."""
    push = parse_gitea_push(_body(gitea_payload([], before=before, after=after))).push
    assert (push.created, push.deleted) == (created, deleted)


def test_gitea_truncated_commit_list_is_marked_with_its_missing_count() -> None:
    """`total_commits` above the list: incomplete, and how many are missing."""
    push = parse_gitea_push(_body(gitea_payload([gitea_commit(1)], total=30))).push
    assert (push.commit_list_complete, push.commits_missing) == (False, 29)


@PROPERTY
@given(
    name=_text,
    message=_text,
    path=_text.filter(bool),
    files=_paths,
    listed=st.integers(0, 20),
    extra=st.integers(0, 5000),
)
def test_gitlab_generated_pushes_keep_every_text_and_count(
    name: str, message: str, path: str, files: list[str], listed: int, extra: int
) -> None:
    """Unicode names, messages and paths come back unchanged; the missing count is exact."""
    commits = [gitlab_commit(i, message=message, added=files) for i in range(listed)]
    payload = gitlab_payload(commits, total=listed + extra, path=f"g/{path}")
    payload["user_name"] = name
    push = _gitlab(payload)
    assert push.pusher.name == name and push.repository_full_name == f"g/{path}"
    assert all(c.message == message and c.files.added == tuple(files) for c in push.commits)
    assert push.commits_missing == extra and push.commit_list_complete == (extra == 0)


@PROPERTY
@given(
    name=_text,
    message=_text,
    files=_paths,
    drop=st.sets(st.sampled_from(["total_commits", "head_commit", "commits", "compare_url"])),
)
def test_gitea_generated_pushes_with_missing_optional_fields_parse(
    name: str, message: str, files: list[str], drop: set[str]
) -> None:
    """Optional fields may be absent; what is present comes back unchanged."""
    payload = gitea_payload([gitea_commit(1, message=message, removed=files)])
    payload["pusher"]["full_name"] = name
    for key in drop:
        payload.pop(key)
    push = parse_gitea_push(_body(payload)).push
    assert push.pusher.name == (name or None)
    assert len(push.commits) == (0 if "commits" in drop else 1)
    assert all(c.message == message and c.files.removed == tuple(files) for c in push.commits)


_FIELDS = {
    "gitlab": [
        "ref",
        "before",
        "after",
        "user_id",
        "project",
        "project.id",
        "commits",
        "object_kind",
    ],
    "gitea": [
        "ref",
        "before",
        "after",
        "repository",
        "repository.id",
        "sender",
        "pusher",
        "commits",
    ],
}
_WRONG = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False),
    _text,
    st.lists(st.integers(), max_size=2),
    st.dictionaries(_text, st.integers(), max_size=2),
)


def _mutate(payload: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    mutated = copy.deepcopy(payload)
    *parents, last = path.split(".")
    node = mutated
    for part in parents:
        node = node[part]
    node[last] = value
    return mutated


def _parse(forge: str, payload: dict[str, Any]) -> Push:
    body = _body(payload)
    return parse_gitlab_push(body, "push") if forge == "gitlab" else parse_gitea_push(body).push


@PROPERTY
@given(forge=st.sampled_from(["gitlab", "gitea"]), data=st.data(), value=_WRONG)
def test_mutated_fields_are_refused_with_a_message_or_parsed(
    forge: str, data: st.DataObject, value: Any
) -> None:
    """Any field set to any JSON value: a MalformedPayload naming the problem, or a Push."""
    path = data.draw(st.sampled_from(_FIELDS[forge]))
    base = (
        gitlab_payload([gitlab_commit(1)])
        if forge == "gitlab"
        else gitea_payload([gitea_commit(1)])
    )
    try:
        push = _parse(forge, _mutate(base, path, value))
    except MalformedPayload as refused:
        assert str(refused)
        return
    assert isinstance(push, Push) and push.repository_id > 0


@pytest.mark.parametrize("forge", ["gitlab", "gitea"])
def test_huge_commit_lists_and_file_lists_parse_whole(forge: str) -> None:
    """Thousands of commits with thousands of files each are parsed, not cut."""
    files = [f"src/ünï/{i}.py" for i in range(2000)]
    if forge == "gitlab":
        payload = gitlab_payload([gitlab_commit(i, added=files) for i in range(500)])
    else:
        payload = gitea_payload([gitea_commit(i, added=files) for i in range(500)])
    push = _parse(forge, payload)
    assert len(push.commits) == 500 and push.commits[-1].files.added == tuple(files)
    assert push.commit_list_complete


@pytest.mark.parametrize("forge", ["gitlab", "gitea"])
def test_sha256_repositories_null_ids_mark_creation_and_deletion(forge: str) -> None:
    """In a SHA-256 repository the null id is 64 zeros: still a creation or a deletion."""
    zero, head = "0" * 64, "ab" * 32
    if forge == "gitlab":
        created = _parse(forge, gitlab_payload([], before=zero, after=head))
        deleted = _parse(forge, gitlab_payload([], before=head, after=zero))
    else:
        created = _parse(forge, gitea_payload([], before=zero, after=head))
        deleted = _parse(forge, gitea_payload([], before=head, after=zero))
    assert (created.created, created.deleted, deleted.created, deleted.deleted) == (
        True,
        False,
        False,
        True,
    )
    assert deleted.carried_commits() == ()
