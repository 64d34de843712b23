"""How `verify` reads a PostgreSQL time: as the 8 bytes the server sends, so that a time no
datetime holds is reported, not fatal."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from labledger.core.leaves import value_text
from labledger.storage.leaf_rows import postgres_time


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
