"""Webhook secrets scoped to a forge instance and a part of it, for GitLab and Gitea/Forgejo.

A setting holds comma-separated entries, each `SECRET` (the default instance, every
repository) or `[INSTANCE@]SCOPE=SECRET`, where SCOPE is `*` (every repository of the
instance) or `KIND:VALUE` (e.g. `project:42`, `group:course-2026`, `owner:7`). The instance
a delivery belongs to is the one whose secret authenticated it: a sender cannot choose it
with a header, and project 42 on one GitLab is never project 42 on another.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# The forge column is VARCHAR(16): `gitlab:` plus a name of at most 9 characters fits.
INSTANCE_PATTERN = r"[a-z0-9][a-z0-9-]{0,8}"
# A session's or delivery's forge value: `github`, or `gitlab`/`gitea` with an optional instance.
FORGE_PATTERN = rf"^(github|(gitlab|gitea)(:{INSTANCE_PATTERN})?)$"
_SCOPED = re.compile(
    rf"^(?:(?P<instance>{INSTANCE_PATTERN})@)?(?P<scope>\*|(?P<kind>[a-z]+):(?P<value>[^=\s]+))="
    r"(?P<secret>\S.*)$"
)
# What a scoped entry looks like even when it is wrong: refused, never read as a bare secret.
_LOOKS_SCOPED = re.compile(r"^(?:[^@=\s]*@)?(?:\*|[a-z]+:[^=\s]*)=")


@dataclass(frozen=True, slots=True)
class ScopedSecret:
    """One configured secret: the instance it belongs to and the repositories it covers."""

    instance: str | None  # None: the default instance
    kind: str | None  # None: every repository of the instance
    value: str
    secret: str

    def forge(self, base: str) -> str:
        return base if self.instance is None else f"{base}:{self.instance}"

    def covers(self, scopes: Mapping[str, Iterable[str]]) -> bool:
        return self.kind is None or self.value in scopes.get(self.kind, ())

    def matches(self, given: str) -> bool:
        # Digests first, so that the comparison time says nothing about the secret's length.
        ours = hashlib.sha256(self.secret.encode()).digest()
        return hmac.compare_digest(ours, hashlib.sha256(given.encode()).digest())


def parse_scoped_secrets(
    text: str, setting: str, kinds: Mapping[str, str]
) -> tuple[ScopedSecret, ...]:
    """Parse a setting's entries; `kinds` maps each scope kind to a regex for its value."""
    entries = [e.strip() for e in text.split(",") if e.strip()]
    found = tuple(_entry(e, setting, kinds) for e in entries)
    _refuse_shared_secrets(found, setting)
    return found


def _entry(entry: str, setting: str, kinds: Mapping[str, str]) -> ScopedSecret:
    match = _SCOPED.match(entry)
    if match is None:
        if _LOOKS_SCOPED.match(entry):
            raise ValueError(
                f"{setting}: an entry is not [INSTANCE@]SCOPE=SECRET with an instance name of "
                f"1-9 characters a-z, 0-9 or - (scopes: *, {', '.join(f'{k}:…' for k in kinds)})"
            )
        return ScopedSecret(None, None, "", entry)
    kind, value = match["kind"], match["value"] or ""
    if kind is not None and kind not in kinds:
        raise ValueError(f"{setting}: unknown scope {kind!r}; use one of {', '.join(kinds)} or *")
    if kind is not None and not re.fullmatch(kinds[kind], value):
        raise ValueError(f"{setting}: {kind}:{value[:40]} is not a valid {kind} scope")
    return ScopedSecret(match["instance"], kind, value, match["secret"])


def _refuse_shared_secrets(found: tuple[ScopedSecret, ...], setting: str) -> None:
    # The instance is read from the secret that matched: one secret in two instances would
    # leave a delivery's instance to chance.
    owners: dict[str, str | None] = {}
    for entry in found:
        if owners.setdefault(entry.secret, entry.instance) != entry.instance:
            raise ValueError(f"{setting}: one secret is configured for two instances")


def matching(entries: Iterable[ScopedSecret], given: str | None) -> list[ScopedSecret]:
    """Every entry whose secret equals `given`, each compared in constant time."""
    if not given:
        return []
    return [e for e in entries if e.matches(given)]


def instances(entries: Iterable[ScopedSecret]) -> set[str | None]:
    return {e.instance for e in entries}
