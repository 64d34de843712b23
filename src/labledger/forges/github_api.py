"""GitHub's REST API, as far as reconciliation and session discovery need it (issue 24).

The client is gidgethub over httpx2: gidgethub is sans-I/O (the same split as our webhook
parser), small, typed, follows `Link: rel="next"` pagination whatever the cursor scheme, and
since 6.0 offers a hook for reacting to rate-limit answers; githubkit would bring thousands of
generated models for the handful of endpoints used here. Retries are ours, in one place:
403/429 with `retry-after` or an exhausted `x-ratelimit-remaining`, 5xx and network errors wait
and try again, up to `attempts` times, never longer than `max_wait` seconds at once.

Credentials: a token, or a GitHub App (forges/github_app.py; its installation tokens are put on
each request here, by the account the request's path names).

Least privilege: a fine-grained token with "Webhooks: read and write" on the repositories
(repository hooks) or "Webhooks: read and write" on the organisation (organisation hooks);
discovery also needs "Metadata: read" and organisation "Members: read".
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx2
from gidgethub import BadRequest, GitHubBroken, HTTPException, RateLimitExceeded, sansio
from gidgethub.abc import GitHubAPI
from gidgethub.httpx import GitHubAPI as HttpxGitHubAPI

from labledger.forges.github_app import AppKey, AppTokens

_NAME = r"(?!\.\.?/)[\w.-]+"  # an owner or repository name; never `.` or `..`
HOOK = re.compile(rf"^(?:repos/{_NAME}/{_NAME}/hooks/\d+|orgs/{_NAME}/hooks/\d+|app)$")
USER_AGENT = "labledger-reconcile"


class GitHubUnavailable(Exception):
    """GitHub could not be reached or kept refusing after every retry; says which request."""


def describe(exc: Exception) -> str:
    """One line for a request GitHub refused or that could not be made."""
    if isinstance(exc, HTTPException):
        return f"GitHub answered {int(exc.status_code)} {exc}".strip()
    return str(exc)


def hook_base(hook: str) -> str:
    """The API path of a configured hook (`repos/O/N/hooks/ID`, `orgs/O/hooks/ID`, `app`)."""
    if not HOOK.match(hook):
        raise ValueError(
            f"{hook!r} is not a hook: use repos/OWNER/NAME/hooks/ID, orgs/ORG/hooks/ID or app"
        )
    return "/app/hook" if hook == "app" else f"/{hook}"


@dataclass(frozen=True, slots=True)
class Backoff:
    attempts: int = 5
    base_seconds: float = 1.0
    max_wait: float = 60.0


Sleep = Callable[[float], Awaitable[None]]


class GitHubClient(HttpxGitHubAPI):
    """gidgethub's client with the retries GitHub's docs ask of an integration, authenticated
    by a token or as a GitHub App (forges/github_app.py)."""

    def __init__(
        self,
        client: httpx2.AsyncClient,
        credentials: str | AppKey,
        base_url: str,
        backoff: Backoff,
        sleep: Sleep,
    ) -> None:
        token = credentials if isinstance(credentials, str) else None
        super().__init__(client, USER_AGENT, oauth_token=token, base_url=base_url.rstrip("/"))
        self.app = None if isinstance(credentials, str) else AppTokens(credentials)
        self.backoff = backoff
        self._sleep = sleep
        self.retries = 0

    async def sleep(self, seconds: float) -> None:
        await self._sleep(seconds)

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        if self.app is not None:
            path = url[len(self.base_url) :] if url.startswith(self.base_url) else url
            authorization = await self.app.authorization(path, self._as_app)
            headers = {**headers, "authorization": authorization}
        return await self._send(method, url, headers, body)

    async def _send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Mapping[str, str], bytes]:
        for attempt in range(1, self.backoff.attempts + 1):
            try:
                return await super()._request(method, url, headers, body)
            except httpx2.TransportError as exc:
                if attempt == self.backoff.attempts:
                    raise GitHubUnavailable(f"{method} {url}: {exc!r}") from None
                await self._wait(self._exponential(attempt))
        raise AssertionError("unreachable")

    async def _as_app(self, method: str, path: str, jwt: str) -> Any:
        """A request the App makes with its JWT (finding an installation, making its token)."""
        headers = sansio.create_headers(USER_AGENT, jwt=jwt)
        status, answered, data = await self._send(method, f"{self.base_url}{path}", headers, b"")
        return sansio.decipher_response(status, answered, data)[0]

    async def handle_rate_limit_error(
        self, *, method: str, url: str, exception: HTTPException, attempt: int
    ) -> bool:
        wait = self._wait_for(exception, attempt)
        if wait is None or attempt >= self.backoff.attempts:
            return False
        await self._wait(wait)
        return True

    def _wait_for(self, exc: HTTPException, attempt: int) -> float | None:
        headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
        limited = isinstance(exc, RateLimitExceeded) or exc.status_code in (403, 429)
        if limited and "retry-after" in headers:
            return float(headers["retry-after"])
        if limited and headers.get("x-ratelimit-remaining") == "0":
            return max(0.0, float(headers.get("x-ratelimit-reset", 0)) - time.time())
        if limited and "secondary rate limit" in str(exc).lower():
            # GitHub's docs: with neither header, wait at least a minute, longer each time.
            return max(60.0, self._exponential(attempt))
        if exc.status_code == 429 or isinstance(exc, GitHubBroken):
            return self._exponential(attempt)
        return None  # any other 4xx is an answer, not a hiccup

    def _exponential(self, attempt: int) -> float:
        return float(self.backoff.base_seconds * 2 ** (attempt - 1))

    async def _wait(self, seconds: float) -> None:
        if seconds > self.backoff.max_wait:
            raise GitHubUnavailable(f"GitHub asks to wait {seconds:.0f} s, over the limit")
        self.retries += 1
        await self.sleep(seconds)


@asynccontextmanager
async def github_client(
    credentials: str | AppKey,
    base_url: str,
    progress: Callable[[str], None],
    backoff: Backoff | None = None,
) -> AsyncIterator[GitHubClient]:
    """A client for one pass; `progress` hears about every wait GitHub asks for."""

    async def sleep(seconds: float) -> None:
        progress(f"GitHub asks to wait: retrying in {seconds:.1f} s")
        await asyncio.sleep(seconds)

    async with httpx2.AsyncClient(timeout=30.0) as client:
        yield GitHubClient(client, credentials, base_url, backoff or Backoff(), sleep)


async def deliveries_since(api: GitHubAPI, base: str, after_id: int) -> AsyncIterator[Any]:
    """The hook's deliveries newer than `after_id`, newest first (GitHub's order)."""
    async for item in api.getiter(f"{base}/deliveries?per_page=100"):
        if int(item["id"]) <= after_id:
            return
        yield item


async def redeliver(api: GitHubAPI, base: str, delivery_id: int) -> None:
    await api.post(f"{base}/deliveries/{delivery_id}/attempts", data=b"")


async def org_repositories(api: GitHubAPI, org: str) -> AsyncIterator[Any]:
    async for repo in api.getiter(f"/orgs/{org}/repos?per_page=100"):
        yield repo


async def direct_collaborators(api: GitHubAPI, full_name: str) -> list[Any]:
    url = f"/repos/{full_name}/collaborators?affiliation=direct&per_page=100"
    return [c async for c in api.getiter(url)]


async def org_owners(api: GitHubAPI, org: str) -> set[int]:
    return {int(m["id"]) async for m in api.getiter(f"/orgs/{org}/members?role=admin")}


async def repository(api: GitHubAPI, full_name: str) -> Any:
    """`repos/get`: the repository, whose numeric id says it is still the session's."""
    return await api.getitem(f"/repos/{full_name}")


async def push_activity(api: GitHubAPI, full_name: str) -> AsyncIterator[Any]:
    """`repos/list-activities`, newest first, every page (`Link` with opaque cursors)."""
    async for item in api.getiter(f"/repos/{full_name}/activity?per_page=100"):
        yield item


async def compare(api: GitHubAPI, full_name: str, before: str, after: str) -> Any:
    """`repos/compare-commits`: the commits of before...after (up to 250) and their files."""
    return await api.getitem(f"/repos/{full_name}/compare/{before}...{after}")


async def commit(api: GitHubAPI, full_name: str, sha: str) -> Any:
    """`repos/get-commit`: one commit with its files (a branch created at a commit)."""
    return await api.getitem(f"/repos/{full_name}/commits/{sha}")


__all__ = ["BadRequest", "GitHubBroken", "HTTPException"]
