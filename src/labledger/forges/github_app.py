"""Authenticating as a GitHub App: a JWT for the App itself, installation tokens for the rest.

GitHub's App flow (docs "Authenticating as a GitHub App installation"): the App signs a short
JWT (RS256, `iss` = App id, at most 10 minutes) with its private key; with that JWT it finds
the installation on an account (`GET /repos/{owner}/{repo}/installation`,
`GET /orgs/{org}/installation`) and asks for that installation's token
(`POST /app/installations/{id}/access_tokens`), which lasts one hour. The App's own endpoints
(`/app/...`, such as the App's webhook deliveries) take the JWT itself.

The JWT is made by `gidgethub.apps.get_jwt`: the client library already in use, over PyJWT
(which gidgethub requires), so no second JWT implementation enters; it back-dates `iat` by a
minute for clock drift as GitHub advises. Installation tokens are kept per account and
renewed `REFRESH_MARGIN` before they expire, so a long run never presents a stale one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gidgethub.apps import get_jwt

REFRESH_MARGIN = 300.0  # seconds before expiry at which an installation token is renewed
# (method, path, jwt) -> the decoded JSON answer; the client's own request path with retries.
Call = Callable[[str, str, str], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class AppKey:
    """A GitHub App's id and PEM private key (LABLEDGER_GITHUB_APP_ID, ..._PRIVATE_KEY_FILE)."""

    app_id: str
    private_key: str = field(repr=False)


@dataclass
class AppTokens:
    """Installation tokens per account, made and renewed on demand."""

    key: AppKey
    clock: Callable[[], float] = time.time
    _tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    _installations: dict[str, int] = field(default_factory=dict)
    _last_account: str | None = None

    def jwt(self) -> str:
        return get_jwt(app_id=self.key.app_id, private_key=self.key.private_key)

    async def authorization(self, path: str, call: Call) -> str:
        """The Authorization header for a request to `path` (relative to the API root)."""
        account, lookup = installation_lookup(path)
        if account is None or lookup is None:
            if path.startswith("/app/") or path == "/app" or self._last_account is None:
                return f"Bearer {self.jwt()}"
            account = self._last_account  # e.g. /users/LOGIN: any installation may read it
        else:
            self._last_account = account
        token, expires = self._tokens.get(account, ("", 0.0))
        if expires - self.clock() < REFRESH_MARGIN:
            token, expires = await self._renew(account, lookup, call)
        return f"token {token}"

    async def _renew(self, account: str, lookup: str | None, call: Call) -> tuple[str, float]:
        jwt = self.jwt()
        if account not in self._installations:
            if lookup is None:  # pragma: no cover - only known accounts reach here
                raise LookupError(account)
            found = await call("GET", lookup, jwt)
            self._installations[account] = int(found["id"])
        installation = self._installations[account]
        made = await call("POST", f"/app/installations/{installation}/access_tokens", jwt)
        expires = datetime.fromisoformat(made["expires_at"].replace("Z", "+00:00")).timestamp()
        self._tokens[account] = (made["token"], expires)
        return self._tokens[account]


def installation_lookup(path: str) -> tuple[str | None, str | None]:
    """The account a request path belongs to, and where its App installation is found."""
    parts = path.split("?", 1)[0].strip("/").split("/")
    if parts[0] == "repos" and len(parts) >= 3:
        return parts[1].lower(), f"/repos/{parts[1]}/{parts[2]}/installation"
    if parts[0] == "orgs" and len(parts) >= 2:
        return parts[1].lower(), f"/orgs/{parts[1]}/installation"
    return None, None
