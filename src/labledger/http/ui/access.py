"""Who may see a page: instructor cookie sessions, CSRF tokens and read-only student links.

Everything is signed with LABLEDGER_UI_SECRET_KEY (itsdangerous), so rotating the key ends
every session and revokes every student link. A cookie session holds the SHA-256 of the API
token it was opened with, never the token, and is checked against the configured tokens on
every request: removing a token from LABLEDGER_API_TOKENS ends its sessions too.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer

from labledger.config import SCOPES, Settings

SESSION_COOKIE = "labledger_ui"
CSRF_COOKIE = "labledger_csrf"
SESSION_SECONDS = 8 * 3600
MAX_LINK_SECONDS = 366 * 24 * 3600
DEFAULT_LINK_DURATION = "30d"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str) -> int:
    """`90s`, `15m`, `12h`, `30d` as seconds; ValueError naming the accepted form otherwise."""
    match = re.fullmatch(r"([1-9][0-9]{0,6})([smhd])", text.strip())
    seconds = int(match.group(1)) * _UNITS[match.group(2)] if match else 0
    if not 0 < seconds <= MAX_LINK_SECONDS:
        raise ValueError(
            f"invalid duration {text[:40]!r}: a number and s, m, h or d "
            f"(e.g. 30d), at most {MAX_LINK_SECONDS // 86400}d"
        )
    return seconds


@dataclass(frozen=True, slots=True)
class Viewer:
    """A signed-in instructor: the scope of the token used, the actor name, the form token."""

    scope: str
    actor: str
    csrf: str

    def may(self, scope: str) -> bool:
        return SCOPES.index(self.scope) >= SCOPES.index(scope)


class UiKeys:
    """The serializers of the web view; without a UI key there is no sign-in and no link."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        key = settings.ui_secret_key
        self.enabled = key is not None
        secret = key.get_secret_value() if key is not None else secrets.token_hex(32)
        self._session = URLSafeTimedSerializer(secret, salt="labledger-ui-session")
        self._csrf = URLSafeTimedSerializer(secret, salt="labledger-ui-csrf")
        self._link = URLSafeTimedSerializer(secret, salt="labledger-student-link")

    def token_scope(self, token: str) -> tuple[str, str] | None:
        """(scope, actor) of a configured API token, compared in constant time."""
        return self._digest_scope(hashlib.sha256(token.encode()).hexdigest())

    def _digest_scope(self, digest: str) -> tuple[str, str] | None:
        found = None
        for scope, token in self._settings.token_scopes():
            mine = hashlib.sha256(token.encode()).hexdigest()
            if hmac.compare_digest(mine, digest) and (
                found is None or SCOPES.index(scope) > SCOPES.index(found[0])
            ):
                found = (scope, f"ui:{scope}")
        return found

    def open_session(self, token: str) -> str | None:
        """The cookie value for a session opened with `token`, or None for an unknown token."""
        if self.token_scope(token) is None:
            return None
        digest = hashlib.sha256(token.encode()).hexdigest()
        return self._session.dumps({"d": digest, "c": secrets.token_urlsafe(24)})

    def viewer(self, cookie: str | None) -> Viewer | None:
        if not cookie or not self.enabled:
            return None
        try:
            data = self._session.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:
            return None
        found = self._digest_scope(str(data.get("d", "")))
        if found is None:
            return None
        return Viewer(scope=found[0], actor=found[1], csrf=str(data.get("c", "")))

    def anonymous_csrf(self) -> str:
        """A form token for the sign-in form, before any session exists (login CSRF)."""
        return self._csrf.dumps(secrets.token_urlsafe(24))

    def anonymous_csrf_matches(self, cookie: str | None, given: str) -> bool:
        if not cookie or not given:
            return False
        try:
            self._csrf.loads(cookie, max_age=3600)
        except BadSignature:
            return False
        return hmac.compare_digest(cookie, given)

    def make_link(self, session_id: int, seconds: int) -> str:
        """A read-only token for one session, valid for `seconds` from now."""
        if not 0 < seconds <= MAX_LINK_SECONDS:
            raise ValueError(f"a link lasts between 1 second and {MAX_LINK_SECONDS // 86400} days")
        return self._link.dumps({"s": session_id, "e": int(time.time()) + seconds})

    def open_link(self, token: str) -> int | None:
        """The session a link opens, or None when it is forged, tampered with or expired."""
        if not self.enabled:
            return None
        try:
            data = self._link.loads(token)
        except BadSignature:
            return None
        if not isinstance(data, dict) or int(data.get("e", 0)) < time.time():
            return None
        session_id = data.get("s")
        return session_id if isinstance(session_id, int) else None
