"""The leaf encoder writes exactly the bytes of the reference encoder (the plain reading of
the format, kept in tests/leaf_reference.py as an oracle), for any row."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labledger.core.errors import UnknownLeafKind
from labledger.core.leaves import (
    LEAF_FIELDS,
    canonical_json,
    leaf_bytes,
    leaf_encoder,
    parse_leaf,
    personal_commitment,
)
from tests.leaf_reference import reference_leaf_bytes

SALT = bytes(range(16))
OFFSETS = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
)
TIMES = st.one_of(
    st.datetimes(timezones=st.just(UTC)),
    st.datetimes(timezones=OFFSETS),
    st.datetimes(timezones=st.just(UTC)).map(lambda t: t.replace(microsecond=0)),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(1200, 1, 1), timezones=OFFSETS),
)
TEXT = st.one_of(st.text(), st.sampled_from(['"', "\\", "\n\t\x00\x1f\x7f", "é ✓ 𝄞 \u2028"]))
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**63, max_value=2**200),
    TEXT,
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)
ODD_VALUES = st.one_of(
    st.floats(allow_nan=True),
    st.tuples(SCALARS, SCALARS),
    st.dictionaries(st.integers(), SCALARS, max_size=3),
    st.lists(st.floats(), min_size=1, max_size=2),
    st.binary().map(bytearray),
    st.binary().map(memoryview),
)
VALUES = st.one_of(SCALARS, TIMES, st.binary(), JSON_VALUES)


def _row(kind: str, draw: Any, values: st.SearchStrategy[Any]) -> dict[str, Any]:
    fields, personal = LEAF_FIELDS[kind]
    row = {name: draw(values) for name in (*fields, *personal)}
    row["personal_salt"] = draw(st.one_of(st.none(), st.binary(min_size=16, max_size=16)))
    return row


@st.composite
def rows(draw: Any, values: st.SearchStrategy[Any] = VALUES) -> tuple[str, dict[str, Any]]:
    kind = draw(st.sampled_from(sorted(LEAF_FIELDS)))
    return kind, _row(kind, draw, values)


def _outcome(encode: Any, kind: str, row: dict[str, Any]) -> bytes | None:
    """The leaf, or None when the row has no canonical form (which value fails first may
    differ: the encoders visit the fields in different orders)."""
    try:
        return bytes(encode(kind, row))
    except (TypeError, ValueError, OverflowError, UnicodeError):
        return None


@settings(max_examples=400, deadline=None)
@given(rows())
def test_fast_and_reference_encoders_agree(drawn: tuple[str, dict[str, Any]]) -> None:
    """Odd unicode, None, big ints, nested JSON and times of any zone give identical bytes."""
    kind, row = drawn
    # Both refuse alike only a time that leaves datetime's range once moved to UTC.
    assert _outcome(leaf_bytes, kind, row) == _outcome(reference_leaf_bytes, kind, row)


@settings(max_examples=300, deadline=None)
@given(rows(st.one_of(VALUES, ODD_VALUES)))
def test_values_without_a_direct_form_fail_or_agree_alike(
    drawn: tuple[str, dict[str, Any]],
) -> None:
    """Floats, tuples, non-string keys and buffer types: the same bytes, or both refuse."""
    kind, row = drawn
    assert _outcome(leaf_bytes, kind, row) == _outcome(reference_leaf_bytes, kind, row)


@given(st.text())
def test_lone_surrogates_fail_in_both(text: str) -> None:
    """Text that cannot be UTF-8 is refused by both encoders, not written differently."""
    row = _row("audit", lambda _: None, st.none()) | {"actor": text + "\ud800"}
    with pytest.raises(UnicodeEncodeError):
        reference_leaf_bytes("audit", row)
    with pytest.raises(UnicodeEncodeError):
        leaf_bytes("audit", row)


def _attempt(**changes: Any) -> dict[str, Any]:
    fields, personal = LEAF_FIELDS["attempt"]
    row: dict[str, Any] = dict.fromkeys((*fields, *personal))
    row |= {
        "id": 7,
        "received_at": datetime(2025, 11, 24, 16, 58, 12, tzinfo=UTC),
        "changed_files": {"added": ["a.py"], "modified": [], "removed": []},
        "author_name": "Ada Student",
        "author_email": "ada@example.edu",
        "personal_salt": SALT,
    }
    return row | changes


def test_a_time_without_microseconds_is_written_with_six_zeros() -> None:
    """`received_at` reads `2025-11-24T16:58:12.000000Z` in both encoders."""
    _, content = parse_leaf(leaf_bytes("attempt", _attempt()))
    assert content["received_at"] == "2025-11-24T16:58:12.000000Z"
    assert leaf_bytes("attempt", _attempt()) == reference_leaf_bytes("attempt", _attempt())


@pytest.mark.parametrize("encode", [leaf_bytes, reference_leaf_bytes])
def test_the_personal_commitment_covers_the_personal_fields(encode: Any) -> None:
    """Without a stored commitment, `personal_sha256` is SHA-256(salt || their canonical JSON)."""
    row = _attempt()
    personal = {name: row[name] for name in LEAF_FIELDS["attempt"][1]}
    _, content = parse_leaf(encode("attempt", row))
    assert content["personal_sha256"] == personal_commitment(SALT, personal).hex()
    assert content["personal_sha256"] == hashlib.sha256(SALT + canonical_json(personal)).hexdigest()


@pytest.mark.parametrize("encode", [leaf_bytes, reference_leaf_bytes])
def test_an_erased_row_keeps_its_leaf_through_the_stored_commitment(encode: Any) -> None:
    """Personal fields and salt gone, `personal_sha256` of the row used as is: the same leaf."""
    row = _attempt()
    before = encode("attempt", row)
    stored = json.loads(before.split(b"\n", 2)[2])["personal_sha256"]
    erased = row | dict.fromkeys(LEAF_FIELDS["attempt"][1]) | {"personal_salt": None}
    assert encode("attempt", erased) != before
    assert encode("attempt", erased | {"personal_sha256": bytes.fromhex(stored)}) == before


def test_a_stored_commitment_of_none_means_compute_it() -> None:
    """`personal_sha256: None` (a row never erased, from a join) changes nothing."""
    row = _attempt()
    assert leaf_bytes("attempt", row | {"personal_sha256": None}) == leaf_bytes("attempt", row)


def test_kinds_without_personal_fields_ignore_a_commitment() -> None:
    """An audit event has no personal fields, so no `personal_sha256` enters its leaf."""
    row = dict.fromkeys(LEAF_FIELDS["audit"][0]) | {"details": {}}
    with_commitment = row | {"personal_sha256": b"\x01" * 32}
    assert leaf_bytes("audit", with_commitment) == reference_leaf_bytes("audit", row)
    assert b"personal_sha256" not in leaf_bytes("audit", with_commitment)


def test_an_unknown_kind_is_refused() -> None:
    """Both encoders name the kind they do not know."""
    with pytest.raises(UnknownLeafKind):
        leaf_bytes("grade", {})
    with pytest.raises(UnknownLeafKind):
        reference_leaf_bytes("grade", {})
    with pytest.raises(UnknownLeafKind):
        leaf_encoder("grade")
