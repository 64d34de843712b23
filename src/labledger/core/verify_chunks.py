"""Verifying the log a chunk of leaves at a time, so that chunks can be checked apart.

A chunk is the leaves [start, end) with `start` a multiple of its full size (a power of two).
Whoever checks a chunk compares each leaf with the hash recomputed from its row and each
row's time with the back-dating floor in force at its leaf; a chunk where all of that holds
is summed up as a `CheckedChunk`: the perfect subtrees its leaves form, and those of its
prefix at every checkpoint size that falls inside it. `LedgerVerifier.add_chunk` joins these
onto the tree it is rebuilding exactly as feeding the leaves one by one would have. A chunk
where anything is off is not summed up: the caller then reports problems entry by entry.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from labledger.core.merkle import CompactRange, MerkleTree, perfect_heights

Floors = tuple[tuple[int, ...], tuple[datetime, ...]]  # from leaf index -> earliest time


@dataclass(frozen=True, slots=True)
class CheckedChunk:
    """Leaves [start, end), each equal to the hash of its row (or vouched for as purged)."""

    start: int
    end: int
    hashes: tuple[bytes, ...]  # the perfect subtrees of the chunk's leaves, largest first
    inside: dict[int, tuple[bytes, ...]]  # checkpoint size -> those of leaves [start, size)
    rows: dict[str, int] = field(default_factory=dict)  # rows found, by kind

    def extended(self, frontier: CompactRange, size: int | None = None) -> CompactRange:
        """`frontier` (of `start` leaves) grown by this chunk, or by its first `size - start`."""
        if frontier.size != self.start:
            raise ValueError(f"a chunk from leaf {self.start} follows {frontier.size} leaves")
        grown = frontier.copy()
        size = self.end if size is None else size
        hashes = self.hashes if size == self.end else self.inside[size]
        for height, h in zip(perfect_heights(size - self.start), hashes, strict=True):
            grown.append_perfect(h, height)
        return grown


def summarize_chunk(
    start: int, leaves: Sequence[bytes], sizes: Iterable[int], rows: dict[str, int]
) -> CheckedChunk:
    """The `CheckedChunk` of `leaves` (hashes in leaf order) from leaf `start` on."""
    tree = MerkleTree(leaves)
    end = start + len(leaves)
    inside = {s: tuple(tree.range_hashes(s - start)) for s in sizes if start < s < end}
    return CheckedChunk(start, end, tuple(tree.range_hashes(len(leaves))), inside, rows)


def backdate_floors(timestamps: Iterable[tuple[int, datetime | None]], slack: timedelta) -> Floors:
    """From which leaf index on which earliest time holds, given (size, signing time) of every
    checkpoint: an entry at index i may not be older than the latest checkpoint of size <= i
    (less the slack), as `LedgerVerifier` checks it while the tree grows past each size."""
    starts: list[int] = []
    floors: list[datetime] = []
    latest: datetime | None = None
    for size, moment in sorted(timestamps, key=lambda t: t[0]):
        if moment is None:
            continue
        latest = moment if latest is None else max(latest, moment)
        if starts and starts[-1] == size:
            floors[-1] = latest - slack
        else:
            starts.append(size)
            floors.append(latest - slack)
    return tuple(starts), tuple(floors)


def backdated(floors: Floors, indices: Sequence[int], moments: Sequence[datetime | None]) -> bool:
    """Whether any entry (leaf indices ascending, each with its own time or None) is older
    than the floor in force at its index."""
    starts, earliest = floors
    if not starts or not indices:
        return False
    first = max(bisect_right(starts, indices[0]) - 1, 0)
    for k in range(first, len(starts)):
        lo = bisect_right(indices, starts[k] - 1)
        hi = bisect_right(indices, starts[k + 1] - 1) if k + 1 < len(starts) else len(indices)
        if lo >= len(indices):
            break
        oldest = min(filter(None, moments[lo:hi]), default=None)
        if oldest is not None and oldest < earliest[k]:
            return True
    return False
