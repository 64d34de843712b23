"""`append_leaves` against the definition: every perfect subtree the new leaves complete."""

from __future__ import annotations

from hashlib import sha256

from hypothesis import given, settings
from hypothesis import strategies as st

from labledger.core.frontier import Node, append_leaves
from labledger.core.merkle import CompactRange, root


def _leaves(count: int) -> list[bytes]:
    return [sha256(i.to_bytes(4, "big")).digest() for i in range(count)]


def _completed(leaves: list[bytes], size: int) -> set[Node]:
    """Each perfect subtree of 2 or more leaves that ends past `size` and within the leaves."""
    end, found = len(leaves), set()
    for level in range(1, end.bit_length()):
        width = 1 << level
        for index in range(size // width, end // width):
            found.add(Node(level, index, root(leaves[index * width : (index + 1) * width])))
    return found


@settings(max_examples=300, deadline=None)
@given(size=st.integers(0, 300), added=st.integers(0, 300))
def test_appending_completes_exactly_the_subtrees_the_definition_names(
    size: int, added: int
) -> None:
    leaves = _leaves(size + added)
    before = CompactRange()
    before.extend(leaves[:size])
    after, nodes = append_leaves(before, leaves[size:])
    expected = CompactRange()
    expected.extend(leaves)
    assert (after.size, after.hashes) == (expected.size, expected.hashes)
    assert after.root() == root(leaves)
    assert len(nodes) == len(set(nodes))
    assert set(nodes) == _completed(leaves, size)
    assert before.size == size  # the frontier passed in is left as it was


def test_batches_of_any_split_store_the_same_nodes() -> None:
    leaves = _leaves(1000)
    frontier, stored = CompactRange(), set()
    for cut in (1, 2, 3, 64, 65, 511, 1000):
        frontier, nodes = append_leaves(frontier, leaves[frontier.size : cut])
        stored.update(nodes)
    assert frontier.root() == root(leaves)
    assert stored == _completed(leaves, 0)
