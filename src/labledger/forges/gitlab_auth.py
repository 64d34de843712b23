"""GitLab's credentials: the plain `X-Gitlab-Token` and the Standard Webhooks signature.

Both scoped to an instance and a project or group (forges/scoped.py); sources: docs/forges.md.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook, WebhookVerificationError

from labledger.core.errors import SignatureRejected
from labledger.core.model import Push
from labledger.forges.github import MAX_DELIVERY_ID_LENGTH
from labledger.forges.github import _is_header_token as is_header_token
from labledger.forges.scoped import ScopedSecret, matching, parse_scoped_secrets

FORGE = "gitlab"
# `group:PATH` matches a project under that group path (push payloads carry no group id).
SCOPE_KINDS = {"project": r"[1-9][0-9]{0,18}", "group": r"[A-Za-z0-9_.][A-Za-z0-9_./-]{0,254}"}
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^v1,[A-Za-z0-9+/]+={0,2}( v1,[A-Za-z0-9+/]+={0,2})*$")


@dataclass(frozen=True, slots=True)
class Credentials:
    """`LABLEDGER_GITLAB_WEBHOOK_TOKEN` and `LABLEDGER_GITLAB_SIGNING_TOKEN`, parsed."""

    tokens: tuple[ScopedSecret, ...] = ()
    signing: tuple[ScopedSecret, ...] = ()

    @classmethod
    def parse(cls, tokens: str | None, signing: str | None) -> Credentials:
        found = cls(
            parse_scoped_secrets(tokens or "", "LABLEDGER_GITLAB_WEBHOOK_TOKEN", SCOPE_KINDS),
            parse_scoped_secrets(signing or "", "LABLEDGER_GITLAB_SIGNING_TOKEN", SCOPE_KINDS),
        )
        for entry in found.signing:
            _signer(entry, "LABLEDGER_GITLAB_SIGNING_TOKEN")
        return found


@dataclass(frozen=True, slots=True)
class Grant:
    """What authenticated a delivery: its instance and the entries that matched, per kind."""

    forge: str
    instance: str | None
    signed_id: str | None  # `webhook-id`, covered by the signature
    matched: tuple[tuple[ScopedSecret, ...], ...]  # one group per credential kind required

    def check_scope(self, push: Push) -> None:
        """Every credential the instance requires must cover the pushed project."""
        scopes = {"project": {str(push.repository_id)}, "group": _groups(push)}
        for group in self.matched:
            if not any(entry.covers(scopes) for entry in group):
                raise SignatureRejected(
                    f"the GitLab credential that authenticated this delivery does not cover "
                    f"project {push.repository_id}; scope it to the project or its group"
                )


def authenticate(creds: Credentials, headers: Mapping[str, str], body: bytes) -> Grant:
    """Check `X-Gitlab-Token` and, where configured, `webhook-signature`; fail closed."""
    if not creds.tokens and not creds.signing:
        raise SignatureRejected("no GitLab webhook token is configured; every request is refused")
    tokens = matching(creds.tokens, headers.get("x-gitlab-token"))
    signed = _verified_signers(creds.signing, headers, body)
    granted = [
        grant
        for instance in {e.instance for e in (*creds.tokens, *creds.signing)}
        if (grant := _grant(creds, instance, tokens, signed)) is not None
    ]
    if len(granted) != 1:
        raise SignatureRejected(_refusal(headers, tokens, signed, len(granted)))
    grant = granted[0]
    # Only a signature by this instance's own key makes webhook-id the event's identity.
    own = any(e.instance == grant.instance for e in signed)
    return replace(grant, signed_id=headers.get("webhook-id") if own else None)


def _grant(
    creds: Credentials,
    instance: str | None,
    tokens: list[ScopedSecret],
    signed: list[ScopedSecret],
) -> Grant | None:
    """The instance's grant when every kind of credential it has configured matched."""
    required = [
        [e for e in found if e.instance == instance]
        for configured, found in ((creds.tokens, tokens), (creds.signing, signed))
        if any(e.instance == instance for e in configured)
    ]
    if not all(required):
        return None
    forge = FORGE if instance is None else f"{FORGE}:{instance}"
    return Grant(forge, instance, None, tuple(tuple(group) for group in required))


def _refusal(
    headers: Mapping[str, str], tokens: list[ScopedSecret], signed: list[ScopedSecret], n: int
) -> str:
    if n > 1:
        return "the credentials match more than one GitLab instance; configure distinct tokens"
    if not headers.get("x-gitlab-token") and not headers.get("webhook-signature"):
        return "missing X-Gitlab-Token header"
    if tokens and not signed:
        return "this hook's instance requires a webhook-signature (LABLEDGER_GITLAB_SIGNING_TOKEN)"
    if signed and not tokens:
        return "this hook's instance requires X-Gitlab-Token (LABLEDGER_GITLAB_WEBHOOK_TOKEN)"
    return "X-Gitlab-Token or webhook-signature does not match a configured GitLab credential"


def _signer(entry: ScopedSecret, setting: str) -> Webhook:
    if not entry.secret.startswith("whsec_"):
        raise ValueError(f"{setting}: a signing token is whsec_ followed by base64")
    try:
        return Webhook(entry.secret)
    except (binascii.Error, EmptyWebhookSecretError):
        raise ValueError(f"{setting}: a signing token is whsec_ followed by base64") from None


def _verified_signers(
    signing: tuple[ScopedSecret, ...], headers: Mapping[str, str], body: bytes
) -> list[ScopedSecret]:
    """The signing entries whose key made `webhook-signature` within the replay tolerance."""
    signature = headers.get("webhook-signature", "")
    if not signing or not signature:
        return []
    timestamp, msg_id = headers.get("webhook-timestamp", ""), headers.get("webhook-id", "")
    # The library raises a bare ValueError or UnicodeDecodeError on odd input: refuse it first.
    if not _TIMESTAMP.match(timestamp) or not _SIGNATURE.match(signature):
        raise SignatureRejected("webhook-timestamp or webhook-signature is malformed")
    if not is_header_token(msg_id, MAX_DELIVERY_ID_LENGTH) or not msg_id:
        raise SignatureRejected("webhook-id must be 1-100 printable ASCII characters")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureRejected("the signed body is not UTF-8") from None
    sent = {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
    found = []
    for entry in signing:
        try:
            _signer(entry, "LABLEDGER_GITLAB_SIGNING_TOKEN").verify(body, sent, json_parse=False)
        except WebhookVerificationError as exc:
            if "timestamp" in str(exc):
                raise SignatureRejected(
                    "webhook-timestamp is outside the 5-minute tolerance: a replayed or "
                    "delayed delivery; resend it from the hook's Recent events"
                ) from None
            continue
        found.append(entry)
    return found


def _groups(push: Push) -> set[str]:
    """Every group path above the project: `a/b/c` is under `a` and `a/b`."""
    parts = push.repository_full_name.split("/")[:-1]
    return {"/".join(parts[: i + 1]) for i in range(len(parts))}
