"""Text `verify` writes into leaves without building values first is the reference's text:
a push's commit lists from its commit rows, and strings JSON leaves as they are."""

from __future__ import annotations

from json.encoder import encode_basestring

from hypothesis import given, settings
from hypothesis import strategies as st

from labledger.core.leaf_batches import plain_text
from labledger.core.leaves import value_text
from labledger.storage.leaf_columns import commit_texts

SHAS = st.one_of(
    st.text(alphabet="0123456789abcdef", min_size=40, max_size=40),
    st.text(),  # quotes, backslashes, control characters (\x1e too), any unicode
)


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
