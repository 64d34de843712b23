"""Leaf bytes of many rows of one kind at once, column by column (for `verify` and export).

Byte for byte what `leaves.leaf_bytes` writes for each row. Encoding a whole column at a time
lets the common cases run at C speed: a column whose values all have one plain type (every
`id` an int, every `message` a str, every time an aware UTC datetime) is turned into JSON
text by one `map` over a built-in, and each leaf is then one `%` over a template built once
per batch. A column with mixed or unusual values falls back to the per-value encoder of
`leaves`, itself checked against the reference encoder.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

from labledger.core.leaves import (
    LEAF_FIELDS,
    LEAF_VERSION,
    UnknownLeafKind,
    value_text,
)

Column = tuple[str, Sequence[Any]]  # a %-format piece and the values it takes, one per row
_BOOL_TEXT = {True: "true", False: "false"}
_ISO_MICROSECONDS = operator.methodcaller("isoformat", "T", "microseconds")
_COMMITMENT = "personal_sha256"


def _same_type_column(kind: type, values: list[Any]) -> Column | None:
    if kind is str:
        return "%s", list(map(encode_basestring, values))
    if kind is int:
        return "%d", values
    if kind is bool:
        return "%s", list(map(_BOOL_TEXT.__getitem__, values))
    if kind is bytes:
        return '"%s"', list(map(bytes.hex, values))
    if kind is type(None):
        return "null", ()
    if kind is datetime and all(v.tzinfo is UTC for v in values) and min(values).year >= 1000:
        # strftime's %Y pads no year below 1000, so those take the per-value path
        return '"%.26sZ"', list(map(_ISO_MICROSECONDS, values))
    return None


def _column(values: list[Any]) -> Column:
    types = set(map(type, values))
    if len(types) == 1:
        found = _same_type_column(types.pop(), values)
        if found is not None:
            return found
    return "%s", [value_text(v) for v in values]


def _fill(head: str, values_by_name: list[tuple[str, list[Any]]], count: int) -> list[str]:
    """`head` and the canonical JSON object of each row, keys in sorted order."""
    columns = sorted((name, _column(values)) for name, values in values_by_name)
    body = ",".join(f'"{name}":{spec}' for name, (spec, _) in columns)
    template = head.replace("%", "%%") + "{" + body + "}"
    filled = [values for _, (spec, values) in columns if spec != "null"]
    if not filled:
        return [template % ()] * count
    return [template % values for values in zip(*filled, strict=True)]


def _values(name: str, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    return list(map(operator.itemgetter(name), rows))


def _commitments(personal: tuple[str, ...], rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    """Each row's stored commitment (an erased row), else SHA-256(salt || personal JSON)."""
    stored = [row.get(_COMMITMENT) for row in rows]
    if all(c is not None for c in stored):
        return stored
    texts = _fill("", [(n, _values(n, rows)) for n in personal], len(rows))
    sha256 = hashlib.sha256
    return [
        c
        if c is not None
        else sha256(bytes(row.get("personal_salt") or b"") + text.encode("utf-8")).digest()
        for c, row, text in zip(stored, rows, texts, strict=True)
    ]


def leaf_bytes_many(kind: str, rows: Sequence[Mapping[str, Any]]) -> list[bytes]:
    """`[leaf_bytes(kind, row) for row in rows]`, written column by column."""
    try:
        fields, personal = LEAF_FIELDS[kind]
    except KeyError:
        raise UnknownLeafKind(kind) from None
    if not rows:
        return []
    values_by_name = [(name, _values(name, rows)) for name in fields]
    if personal:
        values_by_name.append((_COMMITMENT, _commitments(personal, rows)))
    head = f"{LEAF_VERSION}\n{kind}\n"
    return [text.encode("utf-8") for text in _fill(head, values_by_name, len(rows))]
