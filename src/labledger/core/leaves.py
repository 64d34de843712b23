"""Canonical, versioned leaf bytes for every ledger entry (contract invariant 7).

A leaf is `labledger-leaf/v1\\n<kind>\\n<canonical JSON>`: keys sorted, no whitespace, UTF-8,
times as `YYYY-MM-DDTHH:MM:SS.ffffffZ`, bytes as lowercase hex, integers as JSON numbers
(no floats appear). Personal fields (names, emails, logins) are not in the leaf: it carries
`personal_sha256 = SHA-256(salt || canonical JSON of those fields)` with a random per-row
salt, so erasing them later leaves the tree verifiable. docs/verification.md specifies this.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from labledger.core.merkle import leaf_hash

LEAF_VERSION = "labledger-leaf/v1"

# kind -> (fields copied into the leaf, personal fields committed through a salted hash)
LEAF_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "session": (
        (
            "id", "lab_id", "subject_id", "forge", "repository_id", "repository_full_name",
            "branch_glob", "opens_at", "due_at", "closes_at", "created_at",
        ),
        (),
    ),
    "delivery": (
        ("id", "forge", "delivery_id", "hook_id", "event", "received_at", "body_sha256",
         "body_size"),
        (),
    ),
    "push": (
        (
            "id", "delivery_pk", "forge", "repository_id", "repository_full_name", "ref",
            "before_sha", "after_sha", "created", "deleted", "forced", "sender_id", "pushed_at",
            "commit_count", "commit_list_complete", "commits",
        ),
        ("pusher_name", "pusher_email", "sender_login"),
    ),
    "attempt": (
        (
            "id", "session_id", "commit_sha", "tree_sha", "message", "claimed_timestamp",
            "is_distinct", "branch", "changed_files", "push_id", "delivery_pk", "pushed_at",
            "received_at",
        ),
        (
            "author_name", "author_email", "author_username",
            "committer_name", "committer_email", "committer_username",
        ),
    ),
    "audit": (
        ("id", "occurred_at", "actor", "action", "target_type", "target_id", "details"),
        (),
    ),
    "verification": (
        (
            "id", "attempt_id", "verifier", "run_id", "status", "score_milli",
            "max_score_milli", "details", "reported_at", "actor",
        ),
        (),
    ),
    "session_change": (
        ("id", "session_id", "due_at", "closes_at", "reason", "actor", "changed_at"),
        (),
    ),
}  # fmt: skip


class UnknownLeafKind(ValueError):
    pass


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        _plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        raise TypeError("floats have no canonical form in a leaf")
    return value


def personal_commitment(salt: bytes, personal: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(salt + canonical_json(personal)).digest()


def leaf_bytes(kind: str, row: Mapping[str, Any]) -> bytes:
    """The canonical bytes of one entry, from its stored row (plus `commits` for a push)."""
    try:
        fields, personal = LEAF_FIELDS[kind]
    except KeyError:
        raise UnknownLeafKind(kind) from None
    content = {name: row[name] for name in fields}
    if personal:
        salt = bytes(row.get("personal_salt") or b"")
        content["personal_sha256"] = personal_commitment(salt, {n: row[n] for n in personal})
    return f"{LEAF_VERSION}\n{kind}\n".encode() + canonical_json(content)


def entry_leaf_hash(kind: str, row: Mapping[str, Any]) -> bytes:
    return leaf_hash(leaf_bytes(kind, row))


def parse_leaf(data: bytes) -> tuple[str, dict[str, Any]]:
    """Split leaf bytes back into kind and content, for offline readers."""
    version, kind, content = data.decode("utf-8").split("\n", 2)
    if version != LEAF_VERSION:
        raise ValueError(f"unknown leaf version {version!r}")
    return kind, json.loads(content)
