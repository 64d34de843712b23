"""Leaf bytes of many rows of one kind at once, column by column (for `verify` and export).

Byte for byte what `leaves.leaf_bytes` writes for each row. Encoding a whole column at a time
lets the common cases run at C speed: a column whose values all have one plain type (every
`id` an int, every `message` a str, every time an aware UTC datetime) is turned into JSON
text by one `map` over a built-in, and each leaf is then joined from those texts and the
constant text between them, worked out once per batch. A column with mixed or unusual values
falls back to the per-value encoder of `leaves`, itself checked against the reference
encoder.

`leaf_bytes_columns` takes the columns themselves (no row mappings at all), and a column may
come as `Encoded`: JSON text already in canonical form, such as `json_texts` writes from the
text a database stores for a JSON column (decoded and re-encoded once per distinct text).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from json.encoder import encode_basestring
from typing import Any

from labledger.core.errors import UnknownLeafKind
from labledger.core.leaves import LEAF_FIELDS, LEAF_VERSION, encode_plain_json, value_text

# A column as the text before each of its values, the values as JSON text (None: the text
# before is the whole value, the same in every row) and the text after each.
Column = tuple[str, Sequence[str] | None, str]
_BOOL_TEXT = {True: "true", False: "false"}
_ISO_MICROSECONDS = operator.methodcaller("isoformat", "T", "microseconds")
_COMMITMENT = "personal_sha256"
_SALT = "personal_salt"
# What JSON text escapes (ensure_ascii off); in UTF-8 these bytes stand only for themselves
_ESCAPED = bytes(range(0x20)) + b'"\\'
_DIGEST = operator.methodcaller("digest")
_TZINFO = operator.attrgetter("tzinfo")


def plain_text(text: str) -> bool:
    """Whether JSON writes `text` as it is between its quotes (nothing in it is escaped)."""
    raw = text.encode("utf-8", "surrogatepass")
    return len(raw.translate(None, _ESCAPED)) == len(raw)


class Encoded(list[str]):
    """A column whose values are already canonical JSON text, to be written as they are."""


class _NotPlain(ValueError):
    pass


def _not_plain(text: str) -> Any:
    raise _NotPlain(text)


# JSON text decodes to dicts, lists, str, int, bool and None only (what the canonical form
# writes directly) unless it holds a float or a constant; those raise and take the reference.
_decode_plain = json.JSONDecoder(parse_float=_not_plain, parse_constant=_not_plain).decode


def _canonical_text(raw: Any, decode: Callable[[Any], Any]) -> str:
    if type(raw) is str:
        try:
            return encode_plain_json(_decode_plain(raw))
        except _NotPlain:
            pass
    return value_text(decode(raw))


def json_texts(raw: Sequence[Any], decode: Callable[[Any], Any] = json.loads) -> Encoded:
    """The canonical JSON text of each stored JSON value; `decode` is how the database's own
    reader turns it into a value (used for anything but plain JSON text)."""
    canonical = {text: _canonical_text(text, decode) for text in dict.fromkeys(raw)}
    return Encoded(map(canonical.__getitem__, raw))


def stored_json_texts(raw: Sequence[Any], decode: Callable[[Any], Any] = json.loads) -> Encoded:
    """The texts of a JSON column as stored when the first of them is canonical JSON text
    already (labledger writes them so), else `json_texts`. Leaves built from them are right
    only if every text is canonical: `verify` compares them with the logged leaves and builds
    them again from `json_texts` where they differ. A stored text that yields the logged leaf
    is the canonical text that leaf holds, so nothing passes that `json_texts` would fail: a
    leaf has at most one JSON column, and every other value in it is encoded, so the stored
    text can take no place in the leaf but that of the logged JSON value, which ends where
    the next key begins (keys appear once at the top level of canonical JSON)."""
    if raw and set(map(type, raw)) == {str} and _canonical_text(raw[0], decode) == raw[0]:
        return Encoded(raw)
    return json_texts(raw, decode)


def _same_type_column(kind: type, values: Sequence[Any]) -> Column | None:
    if kind is str:
        if plain_text("".join(values)):  # as encode_basestring leaves them
            return '"', values, '"'
        return "", list(map(encode_basestring, values)), ""
    if kind is int:
        return "", list(map(int.__repr__, values)), ""
    if kind is bool:
        return "", list(map(_BOOL_TEXT.__getitem__, values)), ""
    if kind is bytes:
        return '"', list(map(bytes.hex, values)), '"'
    if kind is type(None):
        return "null", None, ""
    if kind is datetime and set(map(_TZINFO, values)) == {UTC} and min(values).year >= 1000:
        # strftime's %Y pads no year below 1000, so those take the per-value path; the
        # others' isoformat is 26 characters, then "+00:00"
        return '"', [t[:26] for t in map(_ISO_MICROSECONDS, values)], 'Z"'
    return None


def _column(values: Sequence[Any]) -> Column:
    if type(values) is Encoded:
        return "", values, ""
    types = set(map(type, values))
    if len(types) == 1:
        found = _same_type_column(types.pop(), values)
        if found is not None:
            return found
    return "", [value_text(v) for v in values], ""


def _fill(head: str, values_by_name: list[tuple[str, Sequence[Any]]], count: int) -> list[str]:
    """`head` and the canonical JSON object of each row, keys in sorted order: each row's
    text joined from its values' texts and the constant text between them (one `str.join` a
    row, with no format string to parse)."""
    pieces: list[Iterable[str]] = []
    text, comma = head + "{", ""
    for name, (before, values, after) in sorted(
        (name, _column(values)) for name, values in values_by_name
    ):
        text += f'{comma}"{name}":{before}'
        comma = ","
        if values is not None:
            pieces += (itertools.repeat(text, count), values)
            text = ""
        text += after
    text += "}"
    if not pieces:
        return [text] * count
    pieces.append(itertools.repeat(text, count))
    return list(map("".join, zip(*pieces, strict=True)))


def _values(name: str, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    return list(map(operator.itemgetter(name), rows))


def _salted(salt: Any, text: str) -> bytes:
    return bytes(salt or b"") + text.encode("utf-8")


def _commitments(
    personal: tuple[str, ...], columns: Mapping[str, Sequence[Any]], count: int
) -> Sequence[Any]:
    """Each row's stored commitment (an erased row), else SHA-256(salt || personal JSON)."""
    stored = columns.get(_COMMITMENT) or [None] * count
    if None not in stored:
        return stored
    texts = _fill("", [(n, columns[n]) for n in personal], count)
    salts = columns.get(_SALT) or [None] * count
    salt_types = set(map(type, salts))
    if salt_types == {bytes}:
        salted = list(map(bytes.__add__, salts, map(str.encode, texts)))
    elif salt_types == {type(None)}:  # rows without a salt: the text alone
        salted = list(map(str.encode, texts))
    else:
        salted = list(map(_salted, salts, texts))
    digests = map(_DIGEST, map(hashlib.sha256, salted))
    if stored.count(None) == count:
        return list(digests)
    return [c if c is not None else d for c, d in zip(stored, digests, strict=True)]


def _leaf_texts(
    kind: str, columns: Mapping[str, Sequence[Any]], count: int, prefix: str
) -> list[str]:
    try:
        fields, personal = LEAF_FIELDS[kind]
    except KeyError:
        raise UnknownLeafKind(kind) from None
    if not count:
        return []
    values_by_name = [(name, columns[name]) for name in fields]
    if personal:
        values_by_name.append((_COMMITMENT, _commitments(personal, columns, count)))
    return _fill(f"{prefix}{LEAF_VERSION}\n{kind}\n", values_by_name, count)


def leaf_bytes_columns(kind: str, columns: Mapping[str, Sequence[Any]], count: int) -> list[bytes]:
    """The leaf bytes of `count` rows of one kind given column by column: each of the kind's
    fields (a push's `commits` too), and for kinds with personal fields those fields,
    `personal_salt` and, optionally, `personal_sha256` (None where a row was not erased)."""
    return list(map(str.encode, _leaf_texts(kind, columns, count, "")))


def leaf_hashes_columns(kind: str, columns: Mapping[str, Sequence[Any]], count: int) -> list[bytes]:
    """The RFC 9162 leaf hash (SHA-256 of 0x00 and the leaf bytes) of each of those leaves."""
    texts = _leaf_texts(kind, columns, count, "\x00")
    return list(map(_DIGEST, map(hashlib.sha256, map(str.encode, texts))))


def leaf_bytes_many(kind: str, rows: Sequence[Mapping[str, Any]]) -> list[bytes]:
    """`[leaf_bytes(kind, row) for row in rows]`, written column by column."""
    try:
        fields, personal = LEAF_FIELDS[kind]
    except KeyError:
        raise UnknownLeafKind(kind) from None
    if not rows:
        return []
    columns = {name: _values(name, rows) for name in fields}
    if personal:
        columns[_COMMITMENT] = stored = [row.get(_COMMITMENT) for row in rows]
        columns[_SALT] = [row.get(_SALT) for row in rows]
        if None in stored:  # an erased row's personal fields are not read
            columns.update((name, _values(name, rows)) for name in personal)
    return leaf_bytes_columns(kind, columns, len(rows))
