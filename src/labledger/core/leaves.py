"""Canonical, versioned leaf bytes for every ledger entry (contract invariant 7).

A leaf is `labledger-leaf/v1\\n<kind>\\n<canonical JSON>`: keys sorted, no whitespace, UTF-8,
times as `YYYY-MM-DDTHH:MM:SS.ffffffZ`, bytes as lowercase hex, integers as JSON numbers
(no floats appear). Personal fields (names, emails, logins) are not in the leaf: it carries
`personal_sha256 = SHA-256(salt || canonical JSON of those fields)` with a random per-row
salt, so erasing them later leaves the tree verifiable: an erased row carries the stored
commitment itself (`personal_sha256`, 32 raw bytes) in place of the fields and the salt.
docs/verification.md specifies this.

`leaf_bytes` is the one encoder: built once per kind, it knows the key order in advance and
formats the common value types directly (`verify` runs it once per row); any value it has no
direct form for goes through `canonical_json`. The plain reading of the format (a generic walk
of the values, then `json.dumps`) stays in the tests as an oracle, and a test proves both
agree on arbitrary rows.
"""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

from labledger.core.errors import UnknownLeafKind
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


def _fields(kind: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        return LEAF_FIELDS[kind]
    except KeyError:
        raise UnknownLeafKind(kind) from None


def _json_text(value: Any) -> str:
    return canonical_json(value).decode("utf-8")


def _time_text(value: datetime) -> str:
    if value.tzinfo is not UTC:
        if value.tzinfo is None:  # naive: the reference reads it as local time
            return _json_text(value)
        value = value.astimezone(UTC)
    if value.year < 1000:  # strftime's %Y does not pad years below 1000
        return _json_text(value)
    return f'"{value.isoformat(timespec="microseconds")[:26]}Z"'


def _bytes_text(value: bytes) -> str:
    return f'"{value.hex()}"'


_SCALARS = frozenset((str, int, bool, type(None)))
# JSON text as a leaf holds it, for values of the plain types only (what `_plain` leaves as is)
encode_plain_json = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def _is_plain_json(value: Any) -> bool:
    """Only dicts with str keys, lists, str, int, bool and None: what `_plain` leaves as is."""
    kind = type(value)
    if kind is list:
        return all(type(v) in _SCALARS or _is_plain_json(v) for v in value)
    if kind is dict:
        return all(
            type(k) is str and (type(v) in _SCALARS or _is_plain_json(v)) for k, v in value.items()
        )
    return kind in _SCALARS


def _nested_text(value: list[Any] | dict[str, Any]) -> str:
    # A JSON column (changed_files, details) as the database hands it back.
    return encode_plain_json(value) if _is_plain_json(value) else _json_text(value)


# JSON text of a value by its exact type; anything else (subclasses, containers, floats) takes
# the reference path, which also raises where the reference raises.
_VALUE_TEXT: dict[type, Callable[[Any], str]] = {
    str: encode_basestring,
    int: int.__repr__,
    bool: lambda v: "true" if v else "false",
    type(None): lambda v: "null",
    datetime: _time_text,
    bytes: _bytes_text,
    list: _nested_text,
    dict: _nested_text,
}


def value_text(value: Any) -> str:
    """The canonical JSON text of one value, as it appears inside a leaf."""
    return (_VALUE_TEXT.get(type(value)) or _json_text)(value)


def _pairs_encoder(names: tuple[str, ...]) -> Callable[[Mapping[str, Any]], list[str]]:
    """`"name":value` JSON pieces of `row[name]` for fixed names, in canonical (sorted) order."""
    ordered = sorted(names)
    keys = [f'"{name}":' for name in ordered]
    values_of = operator.itemgetter(*ordered) if len(ordered) > 1 else _one(ordered)
    text_of = _VALUE_TEXT.get
    fallback = _json_text

    def encode(row: Mapping[str, Any]) -> list[str]:
        return [
            key + (text_of(type(value)) or fallback)(value)
            for key, value in zip(keys, values_of(row), strict=True)
        ]

    return encode


def _one(names: list[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    return lambda row: tuple(row[name] for name in names)


class _KindEncoder:
    """The leaf of one kind, written directly; `personal_sha256` goes in at its sorted place."""

    __slots__ = ("_commitment_at", "_content", "_head", "_personal")

    def __init__(self, kind: str) -> None:
        fields, personal = _fields(kind)
        self._head = f"{LEAF_VERSION}\n{kind}\n{{"
        self._content = _pairs_encoder(fields)
        self._personal = _pairs_encoder(personal) if personal else None
        self._commitment_at = sorted((*fields, "personal_sha256")).index("personal_sha256")

    def __call__(self, row: Mapping[str, Any]) -> bytes:
        pieces = self._content(row)
        if self._personal is not None:
            commitment = self._commitment(row)
            text = (_VALUE_TEXT.get(type(commitment)) or _json_text)(commitment)
            pieces.insert(self._commitment_at, '"personal_sha256":' + text)
        return (self._head + ",".join(pieces) + "}").encode("utf-8")

    def _commitment(self, row: Mapping[str, Any]) -> Any:
        stored = row.get("personal_sha256")
        if stored is not None or self._personal is None:
            return stored
        salt = bytes(row.get("personal_salt") or b"")
        personal = "{" + ",".join(self._personal(row)) + "}"
        return hashlib.sha256(salt + personal.encode("utf-8")).digest()


_ENCODERS = {kind: _KindEncoder(kind) for kind in LEAF_FIELDS}


def leaf_encoder(kind: str) -> Callable[[Mapping[str, Any]], bytes]:
    """`leaf_bytes` of one kind, looked up once (for loops over a whole table)."""
    try:
        return _ENCODERS[kind]
    except KeyError:
        raise UnknownLeafKind(kind) from None


def leaf_bytes(kind: str, row: Mapping[str, Any]) -> bytes:
    """The canonical bytes of one entry, from its stored row (plus `commits` for a push)."""
    return leaf_encoder(kind)(row)


def entry_leaf_hash(kind: str, row: Mapping[str, Any]) -> bytes:
    return leaf_hash(leaf_bytes(kind, row))


def parse_leaf(data: bytes) -> tuple[str, dict[str, Any]]:
    """Split leaf bytes back into kind and content, for offline readers."""
    version, kind, content = data.decode("utf-8").split("\n", 2)
    if version != LEAF_VERSION:
        raise ValueError(f"unknown leaf version {version!r}")
    return kind, json.loads(content)
