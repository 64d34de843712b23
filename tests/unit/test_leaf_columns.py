"""Text `verify` writes into leaves without building values first is the reference's text:
a push's commit lists from its commit rows, strings JSON leaves as they are, and times as
SQLite stores them or PostgreSQL sends them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring

from hypothesis import given, settings
from hypothesis import strategies as st

from labledger.core.leaf_batches import plain_text
from labledger.core.leaves import value_text
from labledger.storage.leaf_columns import SQLITE_TIME_SHAPE, all_of_shape, commit_texts
from labledger.storage.leaf_rows import postgres_time

SHAS = st.one_of(
    st.text(alphabet="0123456789abcdef", min_size=40, max_size=40),
    st.text(),  # quotes, backslashes, control characters (\x1e too), any unicode
)


# the shapes spelled out as patterns (the check reads them with bytes.translate instead)
TIME_PATTERNS = {
    SQLITE_TIME_SHAPE: r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}",
}
# near misses: other digits, a year below 1000, separators swapped, newlines, BC, non-ASCII
TIME_TEXTS = st.one_of(
    st.sampled_from(["2026-11-25 09:30:00.123456", "9999-12-31T23:59:59.999999"]),
    st.builds(
        "{}{:03d}-{:02d}-{:02d}{}{:02d}:{:02d}:{:02d}.{:06d}{}".format,
        st.sampled_from(["1", "2", "9", "0", "\u0661", "-", ""]),
        *(st.integers(0, 999), st.integers(0, 99), st.integers(0, 99)),
        st.sampled_from([" ", "T", "\n", "  "]),
        *(st.integers(0, 99), st.integers(0, 99), st.integers(0, 99)),
        st.integers(0, 10**6),
        st.sampled_from(["", "ZAD", "ZBC", "Z", "\n", "ZAD\n"]),
    ),
    st.text(alphabet="0123456789-:. TZAD\n\u0661", max_size=40),
)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(sorted(TIME_PATTERNS)), st.lists(TIME_TEXTS, min_size=1, max_size=4))
def test_time_shapes_are_the_patterns(shape: bytes, texts: list[str]) -> None:
    """A column of times is taken as text exactly when every value fits its pattern."""
    expected = all(re.fullmatch(TIME_PATTERNS[shape], t, re.ASCII) for t in texts)
    assert all_of_shape("\n".join(texts), shape, len(texts)) == expected


def test_time_shapes_accept_plain_columns() -> None:
    """The common case: a column of ordinary times fits (the test above must see both)."""
    times = ["2026-11-25 09:30:00.123456", "1000-01-01 00:00:00.000000"]
    assert all_of_shape("\n".join(times), SQLITE_TIME_SHAPE, 2)
    assert not all_of_shape("\n".join(times), SQLITE_TIME_SHAPE, 3)
    assert not all_of_shape("0999-01-01 00:00:00.000000", SQLITE_TIME_SHAPE, 1)


def _sent(micros: int) -> bytes:
    """A time as PostgreSQL sends it: microseconds since 2000-01-01 UTC, 8 bytes, signed."""
    return micros.to_bytes(8, "big", signed=True)


@settings(max_examples=500, deadline=None)
@given(st.datetimes(timezones=st.just(UTC)))
def test_a_time_postgresql_sends_reads_as_that_time(moment: datetime) -> None:
    """Any time a datetime holds, years below 1000 included, comes back the same."""
    micros = (moment - datetime(2000, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    read = postgres_time(_sent(micros))
    assert read == moment
    assert type(read) is datetime
    assert value_text(read) == value_text(moment)


def test_a_time_no_datetime_holds_reads_as_text_no_leaf_holds() -> None:
    """Infinities, times BC and past year 9999 become a text: JSON writes it where a leaf
    holds a time or null, so a row holding one never matches its leaf."""
    extremes = [-(2**63), 2**63 - 1, -63_200_000_000 * 10**6, 253_500_000_000 * 10**6]
    for micros in extremes:
        read = postgres_time(_sent(micros))
        assert type(read) is str
        assert re.fullmatch(r'"PostgreSQL time -?[0-9]+ us after 2000-01-01 UTC"', value_text(read))
    assert postgres_time(None) is None
    assert postgres_time(_sent(0)) == datetime(2000, 1, 1, tzinfo=UTC)
    assert postgres_time(_sent(-1)) == datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_plain_text_is_text_json_writes_unescaped(text: str) -> None:
    """A string is plain exactly when JSON writes it between quotes unchanged."""
    assert plain_text(text) == (encode_basestring(text) == f'"{text}"')


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 12), SHAS, st.booleans()), max_size=40),
    st.sets(st.integers(0, 12)),
)
def test_commit_lists_are_the_reference_json_of_each_push(
    carried: list[tuple[int, str, bool]], pushes: set[int]
) -> None:
    """Each push's commits, in order, as the reference writes the list; a push without
    commit rows has an empty list, and rows of pushes not asked for are left out."""
    carried.sort(key=lambda row: row[0])  # push order, positions as drawn
    push_ids = sorted(pushes)
    expected = [
        value_text([[sha, distinct] for owner, sha, distinct in carried if owner == push_id])
        for push_id in push_ids
    ]
    assert commit_texts(push_ids, carried) == expected
