"""Chunks checked apart join into the tree, checkpoints and back-dating checks of the
entry-by-entry verifier; stored JSON text and column-wise leaf hashes match the reference."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from hashlib import sha256
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labledger.core.checkpoint import Checkpoint
from labledger.core.leaf_batches import json_texts, leaf_bytes_many, leaf_hashes_columns
from labledger.core.leaves import LEAF_FIELDS, value_text
from labledger.core.merkle import CompactRange, MerkleTree, leaf_hash
from labledger.core.verify import LedgerVerifier, SignedCheckpoint, VerifyReport
from labledger.core.verify_chunks import backdate_floors, backdated, summarize_chunk
from tests.unit.test_leaf_encoder import JSON_VALUES, batches

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _leaves(count: int) -> list[bytes]:
    return [sha256(i.to_bytes(8, "big")).digest() for i in range(count)]


def _signed(size: int, root: bytes, moment: datetime | None = None) -> SignedCheckpoint:
    cp = Checkpoint("test", size, root, ())
    return SignedCheckpoint(cp, moment, f"checkpoint {size}")


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 70), st.integers(0, 4), st.lists(st.integers(0, 70), max_size=6))
def test_chunks_join_into_the_tree_leaf_by_leaf_growth_builds(
    count: int, height: int, sizes: list[int]
) -> None:
    """Every checkpoint root and the final root come out as if each leaf was added alone."""
    leaves = _leaves(count)
    tree = MerkleTree(leaves)
    sizes = sorted({s for s in sizes if s <= count})
    signed = [_signed(s, tree.root(s)) for s in sizes]
    report = VerifyReport()
    verifier = LedgerVerifier(signed, report)
    width = 1 << height
    for start in range(0, count, width):
        chunk = leaves[start : start + width]
        verifier.add_chunk(summarize_chunk(start, chunk, sizes, {}))
    verifier.finish()
    assert report.ok and report.checkpoints == len(sizes)
    assert report.tree_size == count and report.root == tree.root()
    grown = CompactRange()
    grown.extend(leaves)
    assert report.root == grown.root()


def test_a_chunk_must_follow_the_leaves_before_it() -> None:
    """A chunk that does not start where the tree ends is refused."""
    verifier = LedgerVerifier([], VerifyReport())
    with pytest.raises(ValueError):
        verifier.add_chunk(summarize_chunk(4, _leaves(4), [], {}))


MOMENTS = st.one_of(st.none(), st.integers(0, 100).map(lambda m: T0 + timedelta(minutes=m)))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 12), MOMENTS), max_size=5),
    st.lists(MOMENTS, min_size=1, max_size=12),
    st.integers(0, 11),
)
def test_backdating_floors_flag_what_the_entry_by_entry_check_flags(
    stamps: list[tuple[int, datetime | None]], moments: list[datetime | None], first: int
) -> None:
    """An entry older than the floor at its index is flagged exactly when `add` reports it."""
    slack = timedelta(minutes=5)
    leaves = _leaves(len(moments))
    tree = MerkleTree(leaves)
    signed = sorted(
        (_signed(s, tree.root(s), m) for s, m in stamps if s <= len(moments)),
        key=lambda c: c.checkpoint.size,
    )
    report = VerifyReport()
    verifier = LedgerVerifier(signed, report, slack)
    for i, (leaf, moment) in enumerate(zip(leaves, moments, strict=True)):
        verifier.add(i, "attempts", i, leaf, leaf, moment)
    flagged = any(p.code == "backdated" for p in report.problems)
    floors = backdate_floors([(c.checkpoint.size, c.timestamp) for c in signed], slack)
    assert backdated(floors, range(len(moments)), moments) == flagged
    if not flagged:  # any subset (one kind's entries) is clean too
        assert not backdated(floors, range(first, len(moments)), moments[first:])


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES, st.booleans(), st.booleans())
def test_stored_json_text_becomes_the_canonical_text(
    value: Any, sort_keys: bool, spaced: bool
) -> None:
    """However the database stored a JSON value, its text in the leaf is the reference's."""
    stored = json.dumps(value, sort_keys=sort_keys, indent=1 if spaced else None)
    assert json_texts([stored, stored]) == [value_text(value)] * 2


def test_json_text_with_a_float_fails_as_the_reference_does() -> None:
    """Floats and non-finite constants have no canonical form: the reference path raises."""
    for stored in ('{"a": 1.5}', "[NaN]", "1e3"):
        with pytest.raises(TypeError):
            json_texts([stored])


@settings(max_examples=200, deadline=None)
@given(batches())
def test_column_leaf_hashes_are_the_leaf_hashes_of_the_leaf_bytes(
    drawn: tuple[str, list[dict[str, Any]]],
) -> None:
    """`leaf_hashes_columns` hashes exactly the bytes `leaf_bytes_many` writes."""
    kind, rows = drawn
    try:
        expected = [leaf_hash(b) for b in leaf_bytes_many(kind, rows)]
    except (TypeError, ValueError, OverflowError, UnicodeError):
        return
    fields, personal = LEAF_FIELDS[kind]
    names = {*fields, *personal, "personal_salt", "personal_sha256"}
    columns = {n: [row.get(n) for row in rows] for n in names}
    assert leaf_hashes_columns(kind, columns, len(rows)) == expected
