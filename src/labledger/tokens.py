"""API bearer tokens as configured in LABLEDGER_API_TOKENS: named, scoped, long enough.

An entry is `name:scope:token`, `scope:token` or a bare `token`. A misspelled scope must not
quietly fall back to another entry form (`raed:tok` once became an admin token), so any entry
with a colon must name a known scope. Unnamed entries are named after their scope and place
in the list (`read-2` is the second entry, a read token; a bare token is `admin-N`): the audit
log names who acted without recording anything derived from the secret itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydantic import SecretStr

# Each scope includes the ones before it: admin ⊇ grader ⊇ read.
SCOPES = ("read", "grader", "admin")
# A guessable token protects nothing; 32 characters is 128 bits as hex, more as base64.
MIN_TOKEN_CHARS = 32
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_TOKEN = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII: what a bearer header can carry


@dataclass(frozen=True, slots=True)
class ApiToken:
    name: str
    scope: str
    secret: SecretStr

    @property
    def level(self) -> int:
        return SCOPES.index(self.scope)


def parse_api_tokens(entries: tuple[str, ...]) -> tuple[ApiToken, ...]:
    """Each entry as an ApiToken; ValueError naming the entry's place when one is wrong."""
    found = tuple(_parse_entry(entry, place) for place, entry in enumerate(entries, start=1))
    names = [t.name for t in found]
    if len(set(names)) != len(names):
        raise ValueError("two tokens have the same name; give each entry its own name")
    secrets = [t.secret.get_secret_value() for t in found]
    if len(set(secrets)) != len(secrets):
        raise ValueError("the same token is listed twice; list each token once")
    return found


def _parse_entry(entry: str, place: int) -> ApiToken:
    parts = entry.split(":")
    if len(parts) > 3:
        raise ValueError(f"entry {place} has more than `name:scope:token`; a token has no colon")
    if len(parts) == 1:
        name, scope, token = f"admin-{place}", "admin", parts[0]
    elif len(parts) == 2:
        scope, token = parts
        name = f"{scope}-{place}"
    else:
        name, scope, token = parts
    if scope not in SCOPES:
        raise ValueError(
            f"entry {place} has scope {scope[:20]!r}; use one of {', '.join(SCOPES)} "
            "(`name:scope:token` or `scope:token`)"
        )
    if not _NAME.match(name):
        raise ValueError(f"entry {place}: a token name is 1-64 of A-Z a-z 0-9 . _ -")
    if len(token) < MIN_TOKEN_CHARS or not _TOKEN.match(token):
        raise ValueError(
            f"entry {place} ({name}): a token is at least {MIN_TOKEN_CHARS} printable ASCII "
            "characters; make one with `openssl rand -hex 32`"
        )
    return ApiToken(name, scope, SecretStr(token))
