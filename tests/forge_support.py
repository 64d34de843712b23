"""Builders for signed GitLab and Gitea/Forgejo deliveries used across the tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import Webhook

from labledger.config import GITHUB_MAX_BODY_BYTES
from labledger.forges import gitea, gitlab
from labledger.services.ingest import WebhookAnswer, receive_gitea, receive_gitlab
from labledger.storage.sql_store import SqlStore
from tests.support import FIXTURES, sha

GITLAB_TOKEN = "test-gitlab-token"
GITLAB_SIGNING = "whsec_" + base64.b64encode(bytes(range(32, 64))).decode()
GITEA_SECRET = "test-gitea-secret"
GITLAB_PROJECT_ID = 4815
GITEA_REPO_ID = 162342
GITEA_OWNER_ID = 17


def fixture_json(forge: str, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / forge / name).read_bytes())
    return loaded


def gitlab_commit(seed: object, **overrides: Any) -> dict[str, Any]:
    base = {
        "id": sha(("gitlab-commit", seed)),
        "message": f"lab step {seed}\n",
        "title": f"lab step {seed}",
        "timestamp": "2026-11-20T10:00:00+01:00",
        "url": "https://gitlab.example.edu/c/x",
        "author": {"name": "Ada Student", "email": "ada@example.edu"},
        "added": ["src/main.py"],
        "modified": ["README.md"],
        "removed": [],
    }
    base.update(overrides)
    return base


def gitlab_payload(
    commits: list[dict[str, Any]],
    *,
    project_id: int = GITLAB_PROJECT_ID,
    path: str = "course-2026/lab3-ada",
    ref: str = "refs/heads/main",
    before: str | None = None,
    after: str | None = None,
    total: int | None = None,
) -> dict[str, Any]:
    payload = fixture_json("gitlab", "gitlab-docs-push-hook.json")
    head = after or (commits[-1]["id"] if commits else sha("gitlab-after"))
    payload.update(
        ref=ref,
        before=before or sha(("gitlab-before", ref)),
        after=head,
        checkout_sha=None if head == "0" * 40 else head,
        commits=commits,
        total_commits_count=len(commits) if total is None else total,
        user_id=777,
        user_username="ada",
        project_id=project_id,
    )
    payload["project"].update(id=project_id, path_with_namespace=path)
    return payload


def gitlab_headers(
    body: bytes,
    *,
    event: str = "Push Hook",
    token: str | None = GITLAB_TOKEN,
    key: str | None = "auto",
    signing: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """Headers as GitLab sends them; `signing` adds the Standard Webhooks signature."""
    headers = {"content-type": "application/json", "x-gitlab-event": event}
    if token is not None:
        headers["x-gitlab-token"] = token
    idempotency_key = str(uuid.uuid4()) if key == "auto" else key
    if idempotency_key is not None:
        headers["idempotency-key"] = idempotency_key
    if signing is not None:
        msg_id = idempotency_key or str(uuid.uuid4())
        at = datetime.fromtimestamp(timestamp if timestamp is not None else time.time(), UTC)
        headers["webhook-id"] = msg_id
        headers["webhook-timestamp"] = str(int(at.timestamp()))
        headers["webhook-signature"] = Webhook(signing).sign(msg_id, at, body.decode())
    return headers


def gitea_commit(seed: object, **overrides: Any) -> dict[str, Any]:
    base = {
        "id": sha(("gitea-commit", seed)),
        "message": f"lab step {seed}\n",
        "url": "https://gitea.example.edu/c/x",
        "author": {"name": "Ada Student", "email": "ada@example.edu", "username": "ada"},
        "committer": {"name": "Ada Student", "email": "ada@example.edu", "username": "ada"},
        "verification": None,
        "timestamp": "2026-11-20T10:00:00+01:00",
        "added": ["src/main.py"],
        "removed": None,
        "modified": ["README.md"],
    }
    base.update(overrides)
    return base


def gitea_payload(
    commits: list[dict[str, Any]],
    *,
    repository_id: int = GITEA_REPO_ID,
    owner_id: int = GITEA_OWNER_ID,
    ref: str = "refs/heads/main",
    before: str | None = None,
    after: str | None = None,
    total: int | None = None,
) -> dict[str, Any]:
    payload = fixture_json("gitea", "gitea-docs-push-webhook.json")
    payload.pop("secret")  # deprecated and removed in Gitea 1.14
    payload.update(
        ref=ref,
        before=before or sha(("gitea-before", ref)),
        after=after or (commits[-1]["id"] if commits else sha("gitea-after")),
        commits=commits,
        total_commits=len(commits) if total is None else total,
        head_commit=commits[-1] if commits else None,
    )
    payload["repository"].update(id=repository_id, full_name="course/lab3-ada")
    payload["repository"]["owner"]["id"] = owner_id
    return payload


def gitea_sign(body: bytes, secret: str = GITEA_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def gitea_headers(
    body: bytes,
    *,
    event: str = "push",
    delivery_id: str | None = None,
    secret: str = GITEA_SECRET,
    family: str = "gitea",
) -> dict[str, str]:
    """Headers as Gitea (`family="gitea"`) or Forgejo (`"forgejo"`, both families) send them."""
    delivery = delivery_id or str(uuid.uuid4())
    signature = gitea_sign(body, secret)
    families = ("forgejo", "gitea") if family == "forgejo" else ("gitea",)
    headers = {"content-type": "application/json", "x-hub-signature-256": "sha256=" + signature}
    for name in families:
        headers |= {f"x-{name}-event": event, f"x-{name}-delivery": delivery}
        headers[f"x-{name}-signature"] = signature
    headers |= {"x-github-event": event, "x-github-delivery": delivery}
    return headers


def gitlab_creds(tokens: str | None = GITLAB_TOKEN, signing: str | None = None) -> Any:
    return gitlab.Credentials.parse(tokens, signing)


def gitea_secrets(text: str = GITEA_SECRET) -> Any:
    return gitea.parse_secrets(text)


def deliver_gitlab(
    store: SqlStore,
    payload: dict[str, Any] | bytes,
    *,
    creds: gitlab.Credentials | None = None,
    received_at: datetime | None = None,
    **header_options: Any,
) -> WebhookAnswer:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return receive_gitlab(
        store,
        creds or gitlab_creds(),
        gitlab_headers(body, **header_options),
        body,
        received_at or datetime.now(UTC),
        GITHUB_MAX_BODY_BYTES,
    )


def deliver_gitea(
    store: SqlStore,
    payload: dict[str, Any] | bytes,
    *,
    secrets: str = GITEA_SECRET,
    received_at: datetime | None = None,
    **header_options: Any,
) -> WebhookAnswer:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return receive_gitea(
        store,
        gitea.parse_secrets(secrets),
        gitea_headers(body, **header_options),
        body,
        received_at or datetime.now(UTC),
        GITHUB_MAX_BODY_BYTES,
    )
