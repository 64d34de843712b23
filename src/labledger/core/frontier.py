"""Growing the Merkle log: frontier updates that also yield every completed subtree."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from labledger.core.merkle import CompactRange, node_hash


@dataclass(frozen=True, slots=True)
class Node:
    """The root of the perfect subtree of 2**level leaves starting at leaf index*2**level."""

    level: int
    index: int
    hash: bytes


def append_leaves(
    frontier: CompactRange, leaf_hashes: Iterable[bytes]
) -> tuple[CompactRange, list[Node]]:
    """Append leaves to a frontier; return the new frontier and the subtrees completed on the way.

    Storing those nodes lets a proof for any leaf be read in O(log n) look-ups.
    """
    size, hashes = frontier.size, list(frontier.hashes)
    completed: list[Node] = []
    for leaf in leaf_hashes:
        h, n, level = leaf, size, 0
        while n & 1:
            h = node_hash(hashes.pop(), h)
            n >>= 1
            level += 1
            completed.append(Node(level, ((size + 1) >> level) - 1, h))
        hashes.append(h)
        size += 1
    return CompactRange(size, hashes), completed
