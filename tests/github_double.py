"""A local double of the GitHub REST endpoints labledger uses, served over real HTTP.

Built from GitHub's published OpenAPI description, repository `github/rest-api-description`,
`descriptions/api.github.com/api.github.com.yaml` (operations and their `components/examples`):
- `repos/list-webhook-deliveries`, `orgs/list-webhook-deliveries`, `apps/list-webhook-deliveries`
  (`GET .../hooks/{hook_id}/deliveries`, `GET /app/hook/deliveries`): `per_page` (max 100) and
  an opaque `cursor`, answered newest first with a `Link: <...>; rel="next"` header; items are
  `hook-delivery-item` (example `hook-delivery-items`: id, guid, delivered_at, redelivery,
  duration, status, status_code, event, action, installation_id, repository_id).
- `repos/redeliver-webhook-delivery`, `orgs/redeliver-webhook-delivery`,
  `apps/redeliver-webhook-delivery` (`POST .../deliveries/{delivery_id}/attempts`): 202 with
  `{}` (`components/responses/accepted`), the same GUID and body delivered again.
- `repos/list-for-org` (`GET /orgs/{org}/repos`, `page`/`per_page`, example
  `minimal-repository-items`), `repos/list-collaborators` (`affiliation=direct`, example
  `collaborator-items` with `permissions`), `orgs/list-members` (`role=admin`),
  `users/get-by-username` (`GET /users/{username}`, example `public-user-default-response`).
- `repos/get` (`GET /repos/{owner}/{repo}`), `repos/list-activities` (`GET .../activity`,
  newest first, `per_page` and an opaque `after` cursor followed through `Link`; items are
  `activity`: id, node_id, before, after, ref, timestamp, activity_type, actor),
  `repos/compare-commits` (`GET .../compare/{base}...{head}`, a `commit-comparison`: status,
  ahead_by, total_commits, commits[] of `commit`, files[] of `diff-entry`) and
  `repos/get-commit` (`GET .../commits/{ref}`). The double knows only the commits of the pushes
  it was told about: a compare answers for exactly one recorded push's before...after.
- GitHub App authentication: `apps/create-installation-access-token`
  (`POST /app/installations/{installation_id}/access_tokens`, 201 with an
  `installation-token`: token, expires_at, permissions, repository_selection),
  `apps/get-repo-installation` (`GET /repos/{owner}/{repo}/installation`) and
  `apps/get-org-installation` (`GET /orgs/{org}/installation`), both an `installation`. A JWT
  is checked with the App's public key (RS256, `iss` the App id, at most 10 minutes) and is
  accepted only on `/app/...` and the installation look-ups, as GitHub does; an installation
  token only elsewhere, and only until its `expires_at`.
- Rate limits as GitHub's docs describe them: `x-ratelimit-*` on every answer; a scripted answer
  can be a primary limit (403, remaining 0), a secondary one (429 with `retry-after`) or a 5xx.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx2
import jwt

from tests.support import SECRET, headers_for

TOKEN = "ghp_double_token"


@dataclass
class Delivery:
    id: int
    guid: str
    event: str
    body: bytes
    redelivery: bool
    status_code: int
    delivered_at: str

    def item(self) -> dict[str, Any]:
        ok = 200 <= self.status_code < 300
        return {
            "id": self.id,
            "guid": self.guid,
            "delivered_at": self.delivered_at,
            "redelivery": self.redelivery,
            "duration": 0.27,
            "status": "OK" if ok else _failure(self.status_code),
            "status_code": self.status_code,
            "event": self.event,
            "action": None,
            "installation_id": None,
            "repository_id": json.loads(self.body).get("repository", {}).get("id"),
        }


def _failure(code: int) -> str:
    return "failed to connect to host" if code == 0 else f"Invalid HTTP Response: {code}"


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class GitHubDouble:
    """GitHub's state: hooks with their deliveries, an organisation, scripted failures."""

    target: str = ""  # where hooks POST their deliveries (labledger's webhook URL)
    secret: str = SECRET
    hooks: dict[str, list[Delivery]] = field(default_factory=dict)
    repos: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    collaborators: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    owners: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    scripted: list[tuple[str, Answer]] = field(default_factory=list)  # (path prefix, answer)
    requests: list[tuple[str, str]] = field(default_factory=list)
    repositories: dict[str, dict[str, Any]] = field(default_factory=dict)  # by full name
    activity: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by full name
    comparisons: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    api_commits: dict[str, dict[str, Any]] = field(default_factory=dict)  # by sha
    app_id: str = ""
    app_public_key: str = ""  # PEM; set, the double plays a GitHub App's side too
    installations: dict[str, int] = field(default_factory=dict)  # by account login, lower
    token_lifetime: float = 3600.0
    issued: dict[str, tuple[int, float]] = field(default_factory=dict)  # token: (inst, expiry)
    before_answer: Callable[[str, str], None] | None = None  # (method, path): a test's gate
    base: str = ""  # the double's own URL, for the `Link` headers it writes
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(12345678))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def deliver(self, hook: str, body: bytes, guid: str | None = None) -> Delivery:
        """A push event sent to the target as GitHub sends it; the outcome is recorded."""
        guid = guid or str(uuid.uuid4())
        headers = headers_for(body, delivery_id=guid, hook_id=hook.rsplit("/", 1)[-1])
        headers["x-github-hook-installation-target-type"] = "repository"
        try:
            code = httpx2.post(self.target, content=body, headers=headers, timeout=10).status_code
        except httpx2.TransportError:
            code = 0
        with self.lock:
            first = not any(d.guid == guid for d in self.hooks.setdefault(hook, []))
            made = Delivery(next(self._ids), guid, "push", body, not first, code, _now())
            self.hooks[hook].append(made)
        return made

    def pushed(
        self, full_name: str, payload: dict[str, Any], *, timestamp: datetime | None = None
    ) -> dict[str, Any]:
        """GitHub's own record of a push made from a push payload: the repository, its
        activity item (GitHub's time: `timestamp`, else the payload's pushed_at) and the
        commits a compare of before...after answers."""
        repo_id = payload["repository"]["id"]
        self.repositories.setdefault(full_name, {**repository(*full_name.split("/"), repo_id, "")})
        moment = timestamp or datetime.fromtimestamp(payload["repository"]["pushed_at"], UTC)
        kind = "force_push" if payload["forced"] else "push"
        if payload["created"]:
            kind = "branch_creation"
        if payload["deleted"]:
            kind = "branch_deletion"
        with self.lock:
            item = {
                "id": next(self._ids),
                "node_id": f"RA_{uuid.uuid4().hex[:12]}",
                "before": payload["before"],
                "after": payload["after"],
                "ref": payload["ref"],
                "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "activity_type": kind,
                "actor": user(payload["sender"]["login"], payload["sender"]["id"]),
            }
            self.activity.setdefault(full_name, []).append(item)
        listed = [_api_commit(c) for c in payload["commits"]]
        head = [payload["head_commit"]] if payload.get("head_commit") else []
        for c in [*payload["commits"], *head]:
            self.api_commits[c["id"]] = {**_api_commit(c), "files": _diff_entries([c])}
        files = _diff_entries(payload["commits"])
        self.comparisons[(payload["before"], payload["after"])] = {
            "status": "ahead",
            "ahead_by": len(listed),
            "behind_by": 0,
            "total_commits": len(listed),
            "commits": listed,
            "files": files,
        }
        return item

    def authorized(self, path: str, authorization: str | None) -> bool:
        """Whether GitHub would take these credentials for `path`."""
        if authorization in (f"token {TOKEN}", f"Bearer {TOKEN}"):
            return True
        scheme, _, credential = (authorization or "").partition(" ")
        scheme = scheme.capitalize()  # schemes are case-insensitive (RFC 9110, 11.1)
        app_path = path.startswith("/app/") or path.endswith("/installation")
        if scheme == "Bearer" and self.app_public_key and app_path:
            try:
                claims = jwt.decode(
                    credential,
                    self.app_public_key,
                    algorithms=["RS256"],
                    issuer=self.app_id,
                    options={"require": ["iat", "exp", "iss"]},
                    leeway=0,
                )
            except jwt.InvalidTokenError:
                return False
            return bool(claims["exp"] - claims["iat"] <= 660)  # 10 minutes, plus the back-date
        if scheme == "Token" and credential in self.issued and not app_path:
            return self.issued[credential][1] > time.time()
        return False

    def answer(self, method: str, url: str) -> Answer:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.requests.append((method, parts.path))
        if self.before_answer is not None:
            self.before_answer(method, parts.path)
        for n, (prefix, scripted) in enumerate(self.scripted):
            if parts.path.startswith(prefix):
                del self.scripted[n]
                return scripted
        return self._route(method, parts.path.strip("/"), query)

    def _route(self, method: str, path: str, query: dict[str, str]) -> Answer:
        hook, _, rest = path.partition("/deliveries")
        if hook in self.hooks and method == "GET" and not rest:
            return self._deliveries(hook, query)
        if hook in self.hooks and method == "POST" and rest.endswith("/attempts"):
            return self._redeliver(hook, int(rest.split("/")[1]))
        segments = path.split("/")
        if self.app_public_key and (found := self._app_route(method, segments)) is not None:
            return found
        if method == "GET" and segments[0] == "orgs" and segments[2:] == ["repos"]:
            return _paged(self.repos.get(segments[1], []), query, f"{self.base}/{path}")
        if method == "GET" and segments[2:] == ["members"] and query.get("role") == "admin":
            return _paged(self.owners.get(segments[1], []), query, f"{self.base}/{path}")
        if method == "GET" and segments[0] == "repos" and segments[3:] == ["collaborators"]:
            people = self.collaborators.get("/".join(segments[1:3]), [])
            return _paged(people, query, f"{self.base}/{path}")
        if method == "GET" and segments[0] == "repos" and len(segments) >= 3:
            found = self._repository_route(segments, query, path)
            if found is not None:
                return found
        if method == "GET" and segments[0] == "users" and segments[1] in self.users:
            return Answer(200, self.users[segments[1]])
        return Answer(404, {"message": "Not Found", "documentation_url": "https://docs.github.com"})

    def _app_route(self, method: str, segments: list[str]) -> Answer | None:
        if method == "GET" and segments[-1] == "installation" and len(segments) in (3, 4):
            account = segments[1].lower()
            if account not in self.installations:
                return Answer(404, {"message": "Not Found"})
            return Answer(200, self._installation(account))
        if method == "POST" and segments[:2] == ["app", "installations"] and len(segments) == 4:
            installation = int(segments[2])
            if installation not in self.installations.values():
                return Answer(404, {"message": "Not Found"})
            token = f"ghs_{uuid.uuid4().hex}"
            expiry = time.time() + self.token_lifetime
            self.issued[token] = (installation, expiry)
            expires_at = datetime.fromtimestamp(expiry, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return Answer(
                201,
                {
                    "token": token,
                    "expires_at": expires_at,
                    "permissions": {"administration": "read", "metadata": "read"},
                    "repository_selection": "all",
                },
            )
        return None

    def _installation(self, account: str) -> dict[str, Any]:
        """An `installation` as `base-installation` shows one."""
        return {
            "id": self.installations[account],
            "account": {"login": account, "id": 1, "type": "Organization"},
            "app_id": int(self.app_id),
            "target_type": "Organization",
            "permissions": {"metadata": "read", "organization_hooks": "write"},
            "events": ["push"],
            "repository_selection": "all",
        }

    def _repository_route(
        self, segments: list[str], query: dict[str, str], path: str
    ) -> Answer | None:
        full_name, rest = "/".join(segments[1:3]), segments[3:]
        if full_name not in self.repositories:
            return None
        if not rest:
            return Answer(200, self.repositories[full_name])
        if rest == ["activity"]:
            return self._activity(full_name, query, path)
        if rest[0] == "compare" and len(rest) == 2 and "..." in rest[1]:
            base, _, head = rest[1].partition("...")
            found = self.comparisons.get((base, head))
            return Answer(200, found) if found else Answer(404, {"message": "Not Found"})
        if rest[0] == "commits" and len(rest) == 2 and rest[1] in self.api_commits:
            return Answer(200, self.api_commits[rest[1]])
        return None

    def _activity(self, full_name: str, query: dict[str, str], path: str) -> Answer:
        per_page = min(int(query.get("per_page", 30)), 100)
        newest_first = sorted(self.activity.get(full_name, []), key=lambda a: -a["id"])
        cursor = int(query.get("after", 0) or 0)
        rest = [a for a in newest_first if not cursor or a["id"] < cursor]
        page = rest[:per_page]
        headers = {}
        if len(rest) > per_page:
            nxt = urlencode({"per_page": per_page, "after": page[-1]["id"]})
            headers["link"] = f'<{self.base}/{path}?{nxt}>; rel="next"'
        return Answer(200, page, headers)

    def _deliveries(self, hook: str, query: dict[str, str]) -> Answer:
        per_page = min(int(query.get("per_page", 30)), 100)
        newest_first = sorted(self.hooks[hook], key=lambda d: -d.id)
        cursor = int(query.get("cursor", 0) or 0)
        rest = [d for d in newest_first if not cursor or d.id < cursor]
        page = rest[:per_page]
        headers = {}
        if len(rest) > per_page:
            nxt = urlencode({"per_page": per_page, "cursor": page[-1].id})
            headers["link"] = f'<{self.base}/{hook}/deliveries?{nxt}>; rel="next"'
        return Answer(200, [d.item() for d in page], headers)

    def _redeliver(self, hook: str, delivery_id: int) -> Answer:
        found = [d for d in self.hooks[hook] if d.id == delivery_id]
        if not found:
            return Answer(404, {"message": "Not Found"})
        self.deliver(hook, found[0].body, found[0].guid)
        return Answer(202, {})


def _paged(items: list[dict[str, Any]], query: dict[str, str], url: str) -> Answer:
    per_page = min(int(query.get("per_page", 30)), 100)
    page = int(query.get("page", 1))
    chunk = items[(page - 1) * per_page : page * per_page]
    headers = {}
    if page * per_page < len(items):
        nxt = {**query, "per_page": str(per_page), "page": str(page + 1)}
        headers["link"] = f'<{url}?{urlencode(nxt)}>; rel="next"'
    return Answer(200, chunk, headers)


def _api_commit(c: dict[str, Any]) -> dict[str, Any]:
    """A push payload's commit as `repos/get-commit` and compares show it (schema `commit`)."""

    def git_person(p: dict[str, Any]) -> dict[str, Any]:
        return {"name": p["name"], "email": p["email"], "date": c["timestamp"]}

    def account(p: dict[str, Any]) -> dict[str, Any] | None:
        return user(p["username"], 7000 + len(p["username"])) if p.get("username") else None

    return {
        "sha": c["id"],
        "node_id": f"C_{c['id'][:12]}",
        "commit": {
            "author": git_person(c["author"]),
            "committer": git_person(c["committer"]),
            "message": c["message"],
            "tree": {"sha": c["tree_id"], "url": ""},
            "comment_count": 0,
        },
        "author": account(c["author"]),
        "committer": account(c["committer"]),
        "parents": [],
    }


def _diff_entries(commits: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `diff-entry` items of a range: each path once, with its net status."""
    status: dict[str, str] = {}
    for c in commits:
        for kind, names in (("added", c["added"]), ("modified", c["modified"])):
            for name in names:
                status[name] = "added" if status.get(name) == "added" else kind
        for name in c["removed"]:
            status[name] = "removed"
    return [{"sha": "", "filename": n, "status": s, "changes": 1} for n, s in status.items()]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rate_limited(seconds: int) -> Answer:
    """GitHub's secondary rate limit: 429 (or 403) with `retry-after`."""
    return Answer(
        429,
        {"message": "You have exceeded a secondary rate limit."},
        {"retry-after": str(seconds), "x-ratelimit-remaining": "4000"},
    )


def primary_rate_limited(reset_in: int) -> Answer:
    """GitHub's primary rate limit: 403 with `x-ratelimit-remaining: 0` until the reset."""
    reset = str(int(time.time()) + reset_in)
    body = {"message": "API rate limit exceeded for user ID 1."}
    return Answer(403, body, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": reset})


def broken(status: int = 502) -> Answer:
    return Answer(status, {"message": "Server Error"})


def serve(double: GitHubDouble) -> tuple[ThreadingHTTPServer, str]:
    """Start the double on a free 127.0.0.1 port in a thread; returns (server, base URL)."""

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            if not double.authorized(urlsplit(self.path).path, self.headers.get("authorization")):
                found = Answer(401, {"message": "Bad credentials"})
            else:
                found = double.answer(self.command, self.path)
            data = json.dumps(found.body).encode()
            self.send_response(found.status)
            headers = {
                "content-type": "application/json; charset=utf-8",
                "x-ratelimit-limit": "5000",
                "x-ratelimit-remaining": "4999",
                "x-ratelimit-reset": str(int(time.time()) + 3600),
                "x-ratelimit-resource": "core",
                **found.headers,
            }
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _reply

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    double.base = base
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, base


def user(login: str, user_id: int) -> dict[str, Any]:
    """A `simple-user` as GitHub's examples show one."""
    return {"login": login, "id": user_id, "node_id": f"U_{user_id}", "type": "User"}


def collaborator(login: str, user_id: int, *, admin: bool = False) -> dict[str, Any]:
    """A `collaborator` with its `permissions`, as `collaborator-items` shows."""
    permissions = {"pull": True, "triage": True, "push": True, "maintain": admin, "admin": admin}
    role = "admin" if admin else "write"
    return {**user(login, user_id), "permissions": permissions, "role_name": role}


def repository(org: str, name: str, repo_id: int, created_at: str) -> dict[str, Any]:
    """A `minimal-repository` as `minimal-repository-items` shows one."""
    return {
        "id": repo_id,
        "node_id": f"R_{repo_id}",
        "name": name,
        "full_name": f"{org}/{name}",
        "owner": {"login": org, "id": 1, "type": "Organization"},
        "private": True,
        "created_at": created_at,
        "pushed_at": created_at,
    }
