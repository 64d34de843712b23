"""Builders for signed GitHub deliveries used across the tests."""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from labledger.core.model import SessionSpec
from labledger.core.note import SignerKey

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "test-webhook-secret"
TOKEN = "test-api-token-0123456789abcdef01234567"
REPO_ID = 186853002
_counter = itertools.count(1)
# A fixed test key, so signed checkpoints in failing tests can be reproduced.
SIGNER = SignerKey("labledger.test/ledger", Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / "github" / name).read_bytes()


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers_for(
    body: bytes,
    *,
    event: str = "push",
    delivery_id: str | None = None,
    hook_id: str | None = "4242",
    secret: str = SECRET,
) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": delivery_id or str(uuid.uuid4()),
        "x-hub-signature-256": sign(body, secret),
        "user-agent": "GitHub-Hookshot/test",
    }
    if hook_id is not None:
        headers["x-github-hook-id"] = hook_id
    return headers


def sha(seed: object) -> str:
    return hashlib.sha1(str(seed).encode()).hexdigest()


def commit(seed: object | None = None, **overrides: Any) -> dict[str, Any]:
    seed = next(_counter) if seed is None else seed
    base = {
        "id": sha(("commit", seed)),
        "tree_id": sha(("tree", seed)),
        "distinct": True,
        "message": f"work on lab, step {seed}",
        "timestamp": "2026-11-20T10:00:00+01:00",
        "url": "https://github.com/octo/lab/commit/x",
        "author": {"name": "Ada Student", "email": "ada@example.edu", "username": "ada"},
        "committer": {"name": "Ada Student", "email": "ada@example.edu", "username": "ada"},
        "added": ["src/main.py"],
        "removed": [],
        "modified": ["README.md"],
    }
    base.update(overrides)
    return base


def push_payload(
    commits: list[dict[str, Any]],
    *,
    ref: str = "refs/heads/main",
    pushed_at: int | None = 1_764_000_000,
    repository_id: int = REPO_ID,
    before: str | None = None,
    created: bool = False,
    deleted: bool = False,
    forced: bool = False,
    head_commit: dict[str, Any] | str | None = "last",
) -> dict[str, Any]:
    template = json.loads(fixture_bytes("octokit-webhooks-push-with-new-branch.payload.json"))
    payload = copy.deepcopy(template)
    payload.update(
        ref=ref,
        before=before or sha(("before", ref)),
        after="0" * 40 if deleted else (commits[-1]["id"] if commits else sha("after")),
        created=created,
        deleted=deleted,
        forced=forced,
        commits=commits,
        head_commit=(commits[-1] if commits else None) if head_commit == "last" else head_commit,
    )
    payload["repository"]["id"] = repository_id
    payload["repository"]["pushed_at"] = pushed_at
    payload["sender"] = {"login": "ada", "id": 777, "type": "User"}
    payload["pusher"] = {"name": "ada", "email": "ada@example.edu"}
    return payload


def body_of(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


def session_spec(**overrides: Any) -> SessionSpec:
    values: dict[str, Any] = {
        "lab_id": "lab-1",
        "subject_id": "student-1",
        "forge": "github",
        "repository_id": REPO_ID,
        "repository_full_name": "octo/lab",
        "opens_at": datetime(2025, 1, 1, tzinfo=UTC),
        "due_at": datetime.fromtimestamp(1_764_000_000, UTC),
    }
    values.update(overrides)
    return SessionSpec(**values)
