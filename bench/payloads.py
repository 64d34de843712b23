"""Realistic, pre-signed GitHub push deliveries, built before any clock starts.

The bodies have the shape and size of real push events (a full repository object, sender,
pusher, per-commit file lists): about 8 KB with one commit, 11 KB with five, 22 KB with twenty.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import itertools
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

PUSHED_AT = 1_764_000_000  # 2025-11-24T16:00:00Z, inside every bench session's window
COMMIT_MIX = (1, 1, 1, 5, 1, 5, 1, 20, 5, 1)  # 60 % one commit, 30 % five, 10 % twenty
API = "https://api.github.com"
REPO_LINKS = (
    "forks", "keys", "collaborators", "teams", "hooks", "issue_events", "events", "assignees",
    "branches", "tags", "blobs", "git_tags", "git_refs", "trees", "statuses", "languages",
    "stargazers", "contributors", "subscribers", "subscription", "commits", "git_commits",
    "comments", "issue_comment", "contents", "compare", "merges", "archive", "downloads",
    "issues", "pulls", "milestones", "notifications", "labels", "releases", "deployments",
)  # fmt: skip
USER_LINKS = (
    "followers", "following{/other_user}", "gists{/gist_id}", "starred{/owner}{/repo}",
    "subscriptions", "orgs", "repos", "events{/privacy}", "received_events",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class SignedPush:
    """One push delivery: its headers' values and the exact bytes GitHub would send."""

    delivery_id: str
    repository_id: int
    commit_shas: tuple[str, ...]
    body: bytes
    signature: str


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def fake_sha(*parts: object) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()


@functools.lru_cache(maxsize=4096)
def _user(login: str, uid: int) -> dict[str, object]:
    url = f"{API}/users/{login}"
    links = {f"{name.split('{')[0]}_url": f"{url}/{name}" for name in USER_LINKS}
    return {
        "login": login, "id": uid, "node_id": f"MDQ6VXNlcj{uid}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{uid}?v=4", "gravatar_id": "",
        "url": url, "html_url": f"https://github.com/{login}", **links,
        "type": "User", "site_admin": False,
    }  # fmt: skip


@functools.lru_cache(maxsize=4096)
def _repository(repo_id: int, owner: str) -> dict[str, object]:
    name = f"lab-{repo_id}"
    url = f"{API}/repos/{owner}/{name}"
    links = {f"{link}_url": f"{url}/{link}{{/id}}" for link in REPO_LINKS}
    return {
        "id": repo_id, "node_id": f"R_kgDO{repo_id}", "name": name,
        "full_name": f"{owner}/{name}", "private": True,
        "owner": {"name": owner, "email": f"{owner}@users.noreply.github.com",
                  **_user(owner, repo_id % 9_999_991)},
        "html_url": f"https://github.com/{owner}/{name}", "description": "Lab 3: linked lists",
        "fork": False, "url": f"https://github.com/{owner}/{name}", **links,
        "created_at": PUSHED_AT - 86_400 * 30, "updated_at": "2025-11-20T09:00:00Z",
        "pushed_at": PUSHED_AT, "git_url": f"git://github.com/{owner}/{name}.git",
        "ssh_url": f"git@github.com:{owner}/{name}.git",
        "clone_url": f"https://github.com/{owner}/{name}.git",
        "svn_url": f"https://github.com/{owner}/{name}", "homepage": None, "size": 128,
        "stargazers_count": 0, "watchers_count": 0, "language": "Python", "has_issues": True,
        "has_projects": False, "has_downloads": True, "has_wiki": False, "has_pages": False,
        "forks_count": 0, "mirror_url": None, "archived": False, "disabled": False,
        "open_issues_count": 0, "license": None, "forks": 0, "open_issues": 0, "watchers": 0,
        "default_branch": "main", "stargazers": 0, "master_branch": "main",
        "organization": "course-org", "is_template": False, "topics": [],
        "visibility": "private", "web_commit_signoff_required": False, "custom_properties": {},
    }  # fmt: skip


def _commit(sha: str, step: int, owner: str, repo: str, tree: str) -> dict[str, object]:
    person = {"name": "Ada Student", "email": f"{owner}@example.edu", "username": owner}
    return {
        "id": sha,
        "tree_id": tree,
        "distinct": True,
        "message": f"Implement step {step} of the lab\n\nAdds the list operations and their "
        "tests; fixes the off-by-one in remove().",
        "timestamp": "2025-11-24T16:58:12+01:00",
        "url": f"https://github.com/{owner}/{repo}/commit/{sha}",
        "author": person,
        "committer": person,
        "added": [f"src/lab/step_{step}.py", f"tests/test_step_{step}.py"],
        "removed": [],
        "modified": ["src/lab/linked_list.py", "README.md"],
    }


def push_body(
    repo_id: int,
    shas: Sequence[str],
    pushed_at: int = PUSHED_AT,
    before: str | None = None,
    trees: Sequence[str] | None = None,
) -> bytes:
    """A push event body carrying `shas` (oldest first) to refs/heads/main; `before` and the
    commits' `trees` are made up from the SHAs unless given."""
    owner = f"student{repo_id}"
    repository = {**_repository(repo_id, owner), "pushed_at": pushed_at}  # cached: copy
    trees = trees or [fake_sha("tree", sha) for sha in shas]
    commits = [
        _commit(sha, i, owner, str(repository["name"]), tree)
        for i, (sha, tree) in enumerate(zip(shas, trees, strict=True))
    ]
    payload = {
        "ref": "refs/heads/main", "before": before or fake_sha("before", shas[0]),
        "after": shas[-1],
        "repository": repository, "pusher": {"name": owner, "email": f"{owner}@example.edu"},
        "sender": _user(owner, repo_id % 9_999_991), "installation": {"id": 4242},
        "created": False, "deleted": False, "forced": False, "base_ref": None,
        "compare": f"https://github.com/{owner}/{repository['name']}/compare/x...y",
        "commits": commits, "head_commit": commits[-1],
    }  # fmt: skip
    return json.dumps(payload).encode()


def signed_pushes(
    secret: str, repo_ids: Sequence[int], count: int, nonce: str, mix: Sequence[int] = COMMIT_MIX
) -> list[SignedPush]:
    """`count` pushes with unique delivery ids and SHAs, cycling over repositories and the mix."""
    made = []
    sizes: Iterator[int] = itertools.cycle(mix)
    repos: Iterator[int] = itertools.cycle(repo_ids)
    for index in range(count):
        repo_id, size = next(repos), next(sizes)
        shas = tuple(fake_sha(nonce, index, k) for k in range(size))
        body = push_body(repo_id, shas)
        made.append(SignedPush(str(uuid.uuid4()), repo_id, shas, body, sign(secret, body)))
    return made


def post_request(push: SignedPush, port: int, hook_id: str = "4242") -> bytes:
    """The full HTTP/1.1 request GitHub's hookshot would send, ready to write to a socket."""
    head = (
        f"POST /webhooks/github HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        "User-Agent: GitHub-Hookshot/bench\r\nAccept: */*\r\n"
        "Content-Type: application/json\r\nX-GitHub-Event: push\r\n"
        f"X-GitHub-Delivery: {push.delivery_id}\r\nX-GitHub-Hook-ID: {hook_id}\r\n"
        "X-GitHub-Hook-Installation-Target-Type: repository\r\n"
        f"X-GitHub-Hook-Installation-Target-ID: {push.repository_id}\r\n"
        f"X-Hub-Signature-256: {push.signature}\r\nContent-Length: {len(push.body)}\r\n\r\n"
    )
    return head.encode() + push.body


def get_request(path: str, port: int, token: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()
