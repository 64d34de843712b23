"""Known-answer and lying-server tests for the RFC 9162 Merkle tree.

Vectors (leaves, roots of sizes 1..8, inclusion and consistency proofs) are the
published set of github.com/transparency-dev/merkle, proof/verify_test.go, which
carries them over from certificate-transparency/Trillian; the single hash
vectors are from rfc6962/rfc6962_test.go of the same repository.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest

from labledger.core.errors import InvalidConsistencyProof, InvalidInclusionProof
from labledger.core.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    prove_inclusion,
    root,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex

LEAVES = [h(x) for x in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657")] + [
    h("606162636465666768696a6b6c6d6e6f")
]
ROOTS = [  # ROOTS[n - 1] is the root of the first n leaves
    h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
# (leaf index, tree size, proof); the Go file numbers leaves from 1.
INCLUSION_PROOFS = [
    (0, 1, []),
    (
        0,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        5,
        8,
        [
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        1,
        5,
        [
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]
# (old size, new size, proof)
CONSISTENCY_PROOFS = [
    (1, 1, []),
    (
        1,
        8,
        [
            h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]
LEAF_HASHES = [leaf_hash(d) for d in LEAVES]
SOME_HASH = h("abacaba000000000000000000000000000000000000000000060061e00123456")


def _flip(proof: Sequence[bytes], i: int, mask: int) -> list[bytes]:
    out = list(proof)
    out[i] = bytes([out[i][0] ^ mask]) + out[i][1:]
    return out


def _rfc_mth(hashes: Sequence[bytes]) -> bytes:
    """MTH straight from the recursive definition of RFC 9162 §2.1.1."""
    n = len(hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return hashes[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(_rfc_mth(hashes[:k]), _rfc_mth(hashes[k:]))


def _rfc_path(m: int, hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) straight from RFC 9162 §2.1.3.1."""
    n = len(hashes)
    if n == 1:
        return []
    k = 1 << ((n - 1).bit_length() - 1)
    if m < k:
        return [*_rfc_path(m, hashes[:k]), _rfc_mth(hashes[k:])]
    return [*_rfc_path(m - k, hashes[k:]), _rfc_mth(hashes[:k])]


def _rfc_subproof(m: int, hashes: Sequence[bytes], whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) straight from RFC 9162 §2.1.4.1."""
    n = len(hashes)
    if m == n:
        return [] if whole else [_rfc_mth(hashes)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*_rfc_subproof(m, hashes[:k], whole), _rfc_mth(hashes[k:])]
    return [*_rfc_subproof(m - k, hashes[k:], False), _rfc_mth(hashes[:k])]


def _many_leaf_hashes(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def test_hash_known_answers() -> None:
    """Leaf and node hashes carry the 0x00 and 0x01 prefixes and match the RFC 6962 vectors."""
    assert h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == EMPTY_ROOT
    assert leaf_hash(b"") == h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
    assert leaf_hash(b"L123456") == h(
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )
    assert node_hash(b"N123", b"N456") == h(
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_published_vectors(size: int) -> None:
    """The root of the first n vector leaves equals the published root, by every route."""
    prefix = LEAF_HASHES[:size]
    assert root(prefix) == ROOTS[size - 1]
    assert MerkleTree(prefix).root() == ROOTS[size - 1]
    assert MerkleTree(LEAF_HASHES).root(size) == ROOTS[size - 1]
    frontier = CompactRange()
    frontier.extend(prefix)
    assert frontier.root() == ROOTS[size - 1]


def test_empty_tree_root_is_hash_of_nothing() -> None:
    """A tree with no leaves has the SHA-256 of the empty string as its root."""
    assert root([]) == EMPTY_ROOT
    assert MerkleTree([]).root() == EMPTY_ROOT
    assert CompactRange().root() == EMPTY_ROOT


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_PROOFS)
def test_inclusion_proofs_match_published_vectors(
    index: int, size: int, proof: list[bytes]
) -> None:
    """Generated inclusion proofs equal the published ones, and those verify."""
    assert inclusion_proof(LEAF_HASHES[:size], index) == proof
    assert MerkleTree(LEAF_HASHES).inclusion_proof(index, size) == proof
    verify_inclusion(LEAF_HASHES[index], index, size, proof, ROOTS[size - 1])


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_PROOFS)
def test_consistency_proofs_match_published_vectors(old: int, new: int, proof: list[bytes]) -> None:
    """Generated consistency proofs equal the published ones, and those verify."""
    assert consistency_proof(LEAF_HASHES[:new], old) == proof
    assert MerkleTree(LEAF_HASHES).consistency_proof(old, new) == proof
    verify_consistency(old, new, ROOTS[old - 1], ROOTS[new - 1], proof)


def _lying_inclusion_cases(
    index: int, size: int, proof: list[bytes]
) -> list[tuple[str, int, int, bytes, list[bytes], bytes]]:
    """The corruptions of transparency-dev/merkle's corruptInclusionProof, plus bit flips."""
    leaf, good_root = LEAF_HASHES[index], ROOTS[size - 1]
    cases = [
        ("index - 1", index - 1, size, leaf, proof, good_root),
        ("index + 1", index + 1, size, leaf, proof, good_root),
        ("index ^ 2", index ^ 2, size, leaf, proof, good_root),
        ("size * 2", index, size * 2, leaf, proof, good_root),
        ("size / 2", index, size // 2, leaf, proof, good_root),
        ("wrong leaf", index, size, leaf_hash(b"WrongLeaf"), proof, good_root),
        ("empty root", index, size, leaf, proof, EMPTY_ROOT),
        ("random root", index, size, leaf, proof, SOME_HASH),
        ("trailing garbage", index, size, leaf, [*proof, b""], good_root),
        ("trailing root", index, size, leaf, [*proof, good_root], good_root),
        ("preceding garbage", index, size, leaf, [b"", *proof], good_root),
        ("preceding root", index, size, leaf, [good_root, *proof], good_root),
    ]
    for i in range(len(proof)):
        for mask in (0x08, 0x01, 0x80):
            cases.append(
                (
                    f"bit {mask:#x} of proof[{i}]",
                    index,
                    size,
                    leaf,
                    _flip(proof, i, mask),
                    good_root,
                )
            )
    if proof:
        cases.append(("removed last hash", index, size, leaf, proof[:-1], good_root))
        cases.append(("removed first hash", index, size, leaf, proof[1:], good_root))
    if len(proof) > 1:
        cases.append(
            ("inserted hash", index, size, leaf, [proof[0], SOME_HASH, *proof[1:]], good_root)
        )
    return cases


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_PROOFS[1:])
def test_lying_inclusion_proofs_are_rejected(index: int, size: int, proof: list[bytes]) -> None:
    """A flipped bit, wrong index or size, wrong leaf or root, or a missing or extra hash fails."""
    accepted = []
    for desc, i, n, leaf, bad_proof, bad_root in _lying_inclusion_cases(index, size, proof):
        try:
            verify_inclusion(leaf, i, n, bad_proof, bad_root)
        except InvalidInclusionProof:
            continue
        accepted.append(desc)
    assert accepted == []


def test_inclusion_in_single_leaf_tree_needs_matching_32_byte_hashes() -> None:
    """With an empty proof the leaf must be the root, and both must be real 32-byte hashes."""
    data_hash = leaf_hash(b"data")
    verify_inclusion(data_hash, 0, 1, [], data_hash)
    for leaf, top in [(data_hash, b""), (b"", data_hash), (b"", b""), (data_hash, SOME_HASH)]:
        with pytest.raises(InvalidInclusionProof):
            verify_inclusion(leaf, 0, 1, [], top)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 0), (2, 1), (1, 1), (-1, 4)])
def test_inclusion_outside_the_tree_is_rejected(index: int, size: int) -> None:
    """An index at or beyond the tree size (or negative) never verifies and names both numbers."""
    with pytest.raises(InvalidInclusionProof) as raised:
        verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)
    assert (raised.value.index, raised.value.tree_size) == (index, size)


def _lying_consistency_cases(
    old: int, new: int, proof: list[bytes]
) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    """The corruptions of transparency-dev/merkle's corruptConsistencyProof, plus bit flips."""
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    cases = [
        ("old - 1", old - 1, new, r1, r2, proof),
        ("old + 1", old + 1, new, r1, r2, proof),
        ("old ^ 2", old ^ 2, new, r1, r2, proof),
        ("new * 2", old, new * 2, r1, r2, proof),
        ("new / 2", old, new // 2, r1, r2, proof),
        ("wrong old root", old, new, SOME_HASH, r2, proof),
        ("wrong new root", old, new, r1, SOME_HASH, proof),
        ("swapped roots", old, new, r2, r1, proof),
        ("empty proof", old, new, r1, r2, []),
        ("trailing garbage", old, new, r1, r2, [*proof, b""]),
        ("trailing old root", old, new, r1, r2, [*proof, r1]),
        ("trailing new root", old, new, r1, r2, [*proof, r2]),
        ("preceding garbage", old, new, r1, r2, [b"", *proof]),
        ("preceding old root", old, new, r1, r2, [r1, *proof]),
        ("preceding new root", old, new, r1, r2, [r2, *proof]),
        ("preceding proof[0]", old, new, r1, r2, [proof[0], *proof]),
        ("truncated proof", old, new, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        for mask in (0x10, 0x01, 0x80):
            cases.append((f"bit {mask:#x} of proof[{i}]", old, new, r1, r2, _flip(proof, i, mask)))
    return cases


@pytest.mark.parametrize(("old", "new", "proof"), CONSISTENCY_PROOFS[1:])
def test_lying_consistency_proofs_are_rejected(old: int, new: int, proof: list[bytes]) -> None:
    """A flipped bit, wrong sizes, wrong or swapped roots, or a missing or extra hash fails."""
    accepted = []
    for desc, s1, s2, r1, r2, bad_proof in _lying_consistency_cases(old, new, proof):
        try:
            verify_consistency(s1, s2, r1, r2, bad_proof)
        except InvalidConsistencyProof:
            continue
        accepted.append(desc)
    assert accepted == []


def test_trivial_consistency_accepts_only_an_empty_proof() -> None:
    """Equal sizes need equal roots, an empty old tree needs the empty root, and both no hashes."""
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    verify_consistency(0, 5, EMPTY_ROOT, ROOTS[4], [])
    verify_consistency(3, 3, ROOTS[2], ROOTS[2], [])
    bad = [
        (0, 0, EMPTY_ROOT, SOME_HASH, []),
        (0, 5, SOME_HASH, ROOTS[4], []),
        (3, 3, ROOTS[2], ROOTS[3], []),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT]),
        (0, 1, EMPTY_ROOT, ROOTS[0], [EMPTY_ROOT]),
        (1, 1, ROOTS[0], ROOTS[0], [EMPTY_ROOT]),
    ]
    for old, new, r1, r2, proof in bad:
        with pytest.raises(InvalidConsistencyProof):
            verify_consistency(old, new, r1, r2, proof)


@pytest.mark.parametrize(("old", "new"), [(1, 0), (2, 1), (8, 5)])
def test_consistency_backwards_in_time_is_rejected(old: int, new: int) -> None:
    """A log never shrinks: a newer checkpoint with fewer leaves fails with both sizes named."""
    with pytest.raises(InvalidConsistencyProof) as raised:
        verify_consistency(old, new, ROOTS[max(old, 1) - 1], ROOTS[max(new, 1) - 1], [])
    assert (raised.value.old_size, raised.value.new_size) == (old, new)


def test_every_proof_up_to_size_40_matches_the_rfc_definitions_and_verifies() -> None:
    """For all sizes to 40, roots, paths and consistency proofs equal the RFC recursion."""
    hashes = _many_leaf_hashes(40)
    tree = MerkleTree(hashes)
    for n in range(1, 41):
        expected_root = _rfc_mth(hashes[:n])
        assert root(hashes[:n]) == expected_root == tree.root(n)
        for m in range(n):
            path = tree.inclusion_proof(m, n)
            assert path == _rfc_path(m, hashes[:n])
            verify_inclusion(hashes[m], m, n, path, expected_root)
        for old in range(1, n + 1):
            proof = tree.consistency_proof(old, n)
            assert proof == _rfc_subproof(old, hashes[:n], True)
            verify_consistency(old, n, _rfc_mth(hashes[:old]), expected_root, proof)


def test_proofs_from_a_subtree_hash_function_ask_only_logarithmically_often() -> None:
    """A store that can hash any leaf range serves a proof with O(log n) look-ups."""
    hashes = _many_leaf_hashes(1000)
    tree = MerkleTree(hashes)
    calls: list[tuple[int, int]] = []

    def counting(start: int, end: int) -> bytes:
        calls.append((start, end))
        return tree.subtree_hash(start, end)

    proof = prove_inclusion(counting, 777, 1000)
    assert len(calls) == len(proof) <= 10
    verify_inclusion(hashes[777], 777, 1000, proof, root(hashes))


def test_compact_range_resumes_from_its_saved_state() -> None:
    """A frontier saved as (size, hashes) and restored keeps producing the same roots."""
    hashes = _many_leaf_hashes(100)
    first = CompactRange()
    first.extend(hashes[:37])
    assert len(first.hashes) == bin(37).count("1")
    resumed = CompactRange(first.size, first.hashes)
    resumed.extend(hashes[37:])
    assert resumed.size == 100
    assert resumed.root() == root(hashes)


@pytest.mark.parametrize(
    ("size", "hashes"), [(3, [SOME_HASH]), (-1, []), (1, [b"short"]), (0, [SOME_HASH])]
)
def test_compact_range_refuses_an_inconsistent_state(size: int, hashes: list[bytes]) -> None:
    """A saved frontier whose hash count or hash sizes do not fit its size is refused."""
    with pytest.raises(ValueError):
        CompactRange(size, hashes)


@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.inclusion_proof(8),
        lambda t: t.inclusion_proof(-1),
        lambda t: t.inclusion_proof(0, 9),
        lambda t: t.consistency_proof(9),
        lambda t: t.consistency_proof(3, 2),
        lambda t: t.subtree_hash(4, 4),
    ],
)
def test_proof_requests_outside_the_tree_are_refused(call: Callable[[MerkleTree], object]) -> None:
    """Asking for a leaf, size or range the tree does not hold is a caller error."""
    with pytest.raises(ValueError):
        call(MerkleTree(LEAF_HASHES))
