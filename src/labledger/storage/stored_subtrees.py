"""Proofs from the stored tree: the hashes of any subtree, read from `log_entries` (leaves)
and `merkle_nodes` (completed perfect subtrees), as RFC 9162's proofs ask for them."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from sqlalchemy import Connection

from labledger.core.errors import LedgerError
from labledger.core.merkle import HASH_SIZE, SubtreeHash, node_hash


class StoredSubtrees:
    """MTH(D[start:end]) from stored leaf hashes and completed nodes, read in one query.

    Which subtrees a proof asks for depends only on the sizes involved, so a proof is made
    twice: once against placeholders to learn the O(log n) stored hashes it needs, then, after
    one query for all of them, for real (one round trip instead of one per hash).
    """

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._known: dict[tuple[int, int], bytes] = {}

    def prove(self, make_proof: Callable[[SubtreeHash], list[bytes]]) -> list[bytes]:
        wanted: set[tuple[int, int]] = set()

        def plan(start: int, end: int) -> bytes:
            wanted.update(_stored_parts(start, end))
            return bytes(HASH_SIZE)

        make_proof(plan)
        self._known = _read_stored(self._conn, sorted(wanted))
        return make_proof(self._subtree_hash)

    def _subtree_hash(self, start: int, end: int) -> bytes:
        width = end - start
        if width & (width - 1) == 0 and start % width == 0:
            level = width.bit_length() - 1
            try:
                return self._known[(level, start >> level)]
            except KeyError:
                raise LedgerError(
                    f"the log has no stored hash of leaves [{start}, {end})"
                ) from None
        k = 1 << ((width - 1).bit_length() - 1)
        return node_hash(self._subtree_hash(start, start + k), self._subtree_hash(start + k, end))


def _stored_parts(start: int, end: int) -> Iterator[tuple[int, int]]:
    """(level, index) of the stored perfect subtrees that MTH(D[start:end]) is built from."""
    width = end - start
    if width & (width - 1) == 0 and start % width == 0:
        level = width.bit_length() - 1
        yield level, start >> level
        return
    k = 1 << ((width - 1).bit_length() - 1)
    yield from _stored_parts(start, start + k)
    yield from _stored_parts(start + k, end)


def _read_stored(conn: Connection, wanted: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Leaf hashes (level 0, from log_entries) and node hashes (merkle_nodes), one query."""
    p = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    leaves = [index for level, index in wanted if level == 0]
    nodes = [(level, index) for level, index in wanted if level > 0]
    parts, params = [], []
    if leaves:
        parts.append(
            "SELECT 0, leaf_index, leaf_hash FROM log_entries "
            f"WHERE leaf_index IN ({', '.join([p] * len(leaves))})"
        )
        params.extend(leaves)
    if nodes:
        pairs = " OR ".join([f"(level = {p} AND node_index = {p})"] * len(nodes))
        parts.append(f"SELECT level, node_index, hash FROM merkle_nodes WHERE {pairs}")
        params.extend(v for pair in nodes for v in pair)
    if not parts:
        return {}
    rows = conn.exec_driver_sql(" UNION ALL ".join(parts), tuple(params)).all()
    return {(level, index): bytes(h) for level, index, h in rows}
