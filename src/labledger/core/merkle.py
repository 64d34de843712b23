"""RFC 9162 (RFC 6962) Merkle tree hashing, proofs and their verification.

Pure and standard library only. Hashes are raw 32-byte values; hex or base64
appears only at the edges. Section numbers below refer to RFC 9162 §2.1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from hashlib import sha256

from labledger.core.errors import (
    InvalidConsistencyProof,
    InvalidInclusionProof,
    InvalidProof,
)

HASH_SIZE = 32
EMPTY_ROOT = sha256(b"").digest()  # MTH({}) = HASH(), §2.1.1

# Distinct prefixes keep a leaf from ever being read as an interior node
# (second-preimage resistance, §2.1.1).
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

SubtreeHash = Callable[[int, int], bytes]
"""`subtree_hash(start, end)` returns MTH(D[start:end]) of the log's leaves."""


def leaf_hash(data: bytes) -> bytes:
    return sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(_NODE_PREFIX + left + right).digest()


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over the given leaf hashes (§2.1.1), for any number of them."""
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        level = _parent_level(level)
    return level[0]


def _parent_level(level: list[bytes]) -> list[bytes]:
    # Pairing left to right and lifting an unpaired last node unchanged builds
    # exactly the §2.1.1 tree, whose left subtrees are the largest powers of two.
    parents = [
        sha256(_NODE_PREFIX + a + b).digest()
        for a, b in zip(level[0::2], level[1::2], strict=False)
    ]
    if len(level) % 2:
        parents.append(level[-1])
    return parents


def _split(size: int) -> int:
    """The largest power of two smaller than `size` (the k of §2.1.1), size > 1."""
    return 1 << ((size - 1).bit_length() - 1)


def prove_inclusion(subtree_hash: SubtreeHash, index: int, tree_size: int) -> list[bytes]:
    """PATH(index, D[tree_size]) of §2.1.3.1, asking `subtree_hash` O(log n) times."""
    if not 0 <= index < tree_size:
        raise ValueError(f"leaf index {index} is outside a tree of size {tree_size}")
    siblings: list[bytes] = []
    lo, hi = 0, tree_size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            siblings.append(subtree_hash(lo + k, hi))
            hi = lo + k
        else:
            siblings.append(subtree_hash(lo, lo + k))
            lo += k
    siblings.reverse()  # the RFC lists the path from the leaf upwards
    return siblings


def prove_consistency(subtree_hash: SubtreeHash, old_size: int, new_size: int) -> list[bytes]:
    """PROOF(old_size, D[new_size]) of §2.1.4.1; empty when a size is 0 or they are equal."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return []
    siblings: list[bytes] = []
    lo, hi, m, whole_old_tree = 0, new_size, old_size, True
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            siblings.append(subtree_hash(lo + k, hi))
            hi = lo + k
        else:
            siblings.append(subtree_hash(lo, lo + k))
            lo, m, whole_old_tree = lo + k, m - k, False
    siblings.reverse()
    # SUBPROOF(m, D[m], false) names the old subtree's own hash; when it is the
    # whole old tree the verifier already holds it as the old root.
    return siblings if whole_old_tree else [subtree_hash(lo, hi), *siblings]


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """The inclusion proof of leaf `index` in the tree of all `leaf_hashes`."""
    return MerkleTree(leaf_hashes).inclusion_proof(index)


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """The proof that the tree of the first `old_size` leaves is a prefix of all of them."""
    return MerkleTree(leaf_hashes).consistency_proof(old_size)


def verify_inclusion(
    leaf_hash: bytes, index: int, tree_size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raise InvalidInclusionProof unless `proof` puts `leaf_hash` at `index` under `root`.

    The algorithm of §2.1.3.2, step by step.
    """

    def fail(reason: str) -> InvalidInclusionProof:
        return InvalidInclusionProof(index, tree_size, reason)

    if not 0 <= index < tree_size:
        raise fail("the leaf index is not inside the tree")
    _check_hash_sizes([leaf_hash, root, *proof], fail)
    fn, sn, r = index, tree_size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            raise fail("the proof has more hashes than the tree has levels")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise fail("the proof has fewer hashes than the path to the root")
    if r != root:
        raise fail(f"the proof leads to root {r.hex()}, not {root.hex()}")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Raise InvalidConsistencyProof unless `proof` shows the old tree is a prefix of the new.

    The algorithm of §2.1.4.2 for 0 < old_size < new_size; the trivial cases
    (§2.1.4: an empty old tree, or equal sizes) accept only an empty proof.
    """

    def fail(reason: str) -> InvalidConsistencyProof:
        return InvalidConsistencyProof(old_size, new_size, reason)

    if not 0 <= old_size <= new_size:
        raise fail("a log never shrinks")
    _check_hash_sizes([old_root, new_root, *proof], fail)
    if old_size in (0, new_size):
        _verify_trivial_consistency(old_size, new_size, old_root, new_root, proof, fail)
        return
    if not proof:
        raise fail("the proof is empty")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)  # a power-of-two old tree is itself a subtree
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise fail("the proof has more hashes than needed")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise fail("the proof has fewer hashes than needed")
    if fr != old_root:
        raise fail(f"the proof leads to old root {fr.hex()}, not {old_root.hex()}")
    if sr != new_root:
        raise fail(f"the proof leads to new root {sr.hex()}, not {new_root.hex()}")


def _verify_trivial_consistency(
    old_size: int,
    new_size: int,
    old_root: bytes,
    new_root: bytes,
    proof: Sequence[bytes],
    fail: Callable[[str], InvalidConsistencyProof],
) -> None:
    if proof:
        raise fail("the proof must be empty")
    if old_size == 0 and old_root != EMPTY_ROOT:
        raise fail("the old root is not the empty tree's root")
    if old_size == new_size and old_root != new_root:
        raise fail("two different roots for the same tree size")


def _check_hash_sizes(hashes: Iterable[bytes], fail: Callable[[str], InvalidProof]) -> None:
    # Without this, e.g. an empty leaf hash and an empty root would "verify".
    if any(len(h) != HASH_SIZE for h in hashes):
        raise fail(f"every hash must be {HASH_SIZE} bytes")


class CompactRange:
    """The right edge ("frontier") of a growing tree: O(log n) hashes, appended leaf by leaf.

    Holds the roots of the perfect subtrees that the tree size decomposes into
    (one per set bit, largest first), which is all that `root()` needs. Persist
    `size` and `hashes` and pass them back to the constructor to resume.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError(f"a range of {size} leaves holds {size.bit_count()} hashes")
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError(f"every hash must be {HASH_SIZE} bytes")
        self._size = size
        self._hashes = list(hashes)

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> None:
        h, n = leaf_hash, self._size
        while n & 1:  # each trailing one bit is a perfect subtree now completed
            h = node_hash(self._hashes.pop(), h)
            n >>= 1
        self._hashes.append(h)
        self._size += 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        for h in leaf_hashes:
            self.append(h)

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        r = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            r = node_hash(h, r)
        return r


class MerkleTree:
    """All levels of a tree over a list of leaf hashes, for O(log n) roots and proofs.

    Building hashes each interior node once (n - 1 hashes) and keeps them, about
    as much memory again as the leaf list; every root and proof afterwards, for
    this size or any smaller one, costs O(log² n) hashes at most.
    """

    __slots__ = ("_levels",)

    def __init__(self, leaf_hashes: Sequence[bytes]) -> None:
        levels = [list(leaf_hashes)]
        while len(levels[-1]) > 1:
            levels.append(_parent_level(levels[-1]))
        self._levels = levels

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        return self.subtree_hash(0, size) if size else EMPTY_ROOT

    def subtree_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]); constant time for an aligned power-of-two range."""
        if not 0 <= start < end <= self.size:
            raise ValueError(f"no leaves [{start}, {end}) in a tree of size {self.size}")
        width = end - start
        if width & (width - 1) == 0 and start % width == 0:
            # Entries of level h below the unpaired tail are perfect subtrees.
            return self._levels[width.bit_length() - 1][start // width]
        k = _split(width)
        return node_hash(self.subtree_hash(start, start + k), self.subtree_hash(start + k, end))

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> list[bytes]:
        size = self.size if tree_size is None else tree_size
        self._check_size(size)
        return prove_inclusion(self.subtree_hash, index, size)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        size = self.size if new_size is None else new_size
        self._check_size(size)
        return prove_consistency(self.subtree_hash, old_size, size)

    def _check_size(self, size: int) -> None:
        if size > self.size:
            raise ValueError(f"tree size {size} exceeds the {self.size} leaves held")
