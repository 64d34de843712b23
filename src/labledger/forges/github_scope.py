"""Which webhook secret signed a GitHub delivery, and what that secret may speak for.

A hook secret proves only that the sender knows it. A per-repository hook's secret can be read
by anyone with admin rights on that repository (forge-facts.md), a student included; so a
secret is scoped to one owner (organisation or user) or one GitHub App installation, and a
delivery it signs for a repository of another owner is refused. No network code here.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from labledger.core.errors import SignatureRejected

ScopeKind = Literal["any", "owner", "installation"]
SCOPE_KINDS = ("owner", "installation")


@dataclass(frozen=True, slots=True)
class ScopedSecret:
    """A webhook secret and the repositories it may sign for; `any` is the single
    unscoped LABLEDGER_GITHUB_WEBHOOK_SECRET of a one-hook set-up."""

    secret: bytes = field(repr=False)
    kind: ScopeKind = "any"
    scope_id: int | None = None

    def describe(self) -> str:
        return "unscoped secret" if self.kind == "any" else f"secret of {self.kind} {self.scope_id}"

    def allows(self, owner_id: int | None, installation_id: int | None) -> bool:
        if self.kind == "any":
            return True
        claimed = owner_id if self.kind == "owner" else installation_id
        return claimed is not None and claimed == self.scope_id


def parse_scoped_secrets(text: str) -> tuple[ScopedSecret, ...]:
    """`owner:ID=SECRET,installation:ID=SECRET,...`; raises ValueError naming the bad entry."""
    found = []
    for number, entry in enumerate((e.strip() for e in text.split(",") if e.strip()), 1):
        scope, eq, secret = entry.partition("=")
        kind, _, scope_id = scope.strip().partition(":")
        if not eq or not secret or kind not in SCOPE_KINDS or not _is_id(scope_id):
            raise ValueError(
                f"entry {number} is not owner:ID=SECRET or installation:ID=SECRET "
                "(ID: the owner's or installation's numeric GitHub id)"
            )
        found.append(ScopedSecret(secret.encode("utf-8"), kind, int(scope_id)))  # type: ignore[arg-type]
    return tuple(found)


def _is_id(text: str) -> bool:
    return text.isascii() and text.isdigit() and 0 < int(text) < 2**63


def signing_secret(
    secrets: Sequence[ScopedSecret], body: bytes, header: str | None
) -> ScopedSecret:
    """The configured secret whose HMAC is `X-Hub-Signature-256: sha256=<hex>`; fail closed."""
    if not secrets:
        raise SignatureRejected("no webhook secret is configured; every request is refused")
    given = _signature_bytes(header)
    for candidate in secrets:
        expected = hmac.new(candidate.secret, body, hashlib.sha256).digest()
        if hmac.compare_digest(expected, given):
            return candidate
    raise SignatureRejected("signature does not match the body and the configured secret")


def _signature_bytes(header: str | None) -> bytes:
    if not header:
        raise SignatureRejected("missing X-Hub-Signature-256 header")
    scheme, _, given_hex = header.partition("=")
    if scheme != "sha256":
        raise SignatureRejected("X-Hub-Signature-256 must have the form sha256=<64 hex digits>")
    try:
        return bytes.fromhex(given_hex)
    except ValueError:
        raise SignatureRejected("X-Hub-Signature-256 is not hexadecimal") from None


def check_scope(secret: ScopedSecret, owner_id: int | None, installation_id: int | None) -> None:
    """Refuse a payload that names a repository outside the signing secret's scope."""
    if not secret.allows(owner_id, installation_id):
        claimed = owner_id if secret.kind == "owner" else installation_id
        raise SignatureRejected(
            f"signed with the {secret.describe()}, but the payload's {secret.kind} is "
            f"{claimed if claimed is not None else 'missing'}: outside that secret's scope"
        )
