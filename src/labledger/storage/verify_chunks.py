"""`verify`'s fast path: the log checked in chunks of leaves, in this process or in workers.

Each chunk reads its leaves [start, end) from `log_entries`, the rows they name (ranges of
ids per kind, `ROW_BATCH` ids at a time, column by column: storage/leaf_columns.py),
recomputes every leaf hash and compares, and, when asked, checks each delivery's raw body
against its recorded SHA-256. A chunk where all of that holds comes back as a
`CheckedChunk`; one where anything is off (a gap, a missing or changed row or body, a
back-dated time, a kind it does not know) comes back as None, and `verify` then checks the
whole ledger entry by entry to report it. The chunks are checked here or by worker processes
(storage/verify_workers.py).
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import sqlite3
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Dialect

from labledger.core.leaf_batches import leaf_hashes_columns
from labledger.core.verify import LedgerVerifier, SignedCheckpoint, VerifyReport
from labledger.core.verify_chunks import CheckedChunk, Floors, backdated, summarize_chunk
from labledger.storage.engine import translate_driver_errors
from labledger.storage.leaf_columns import Fetch, KindPlan, driver_fetch, kind_plan
from labledger.storage.leaf_rows import ENTRY_TABLES, UNREADABLE_ERRORS, undecodable_text

if TYPE_CHECKING:
    from labledger.storage.verify_workers import ChunkWorkers

CHUNK_HEIGHT = 15  # 32,768 leaves a chunk: what a worker checks and sums up at a time
# Rows are read this many ids at a time: the rows of a batch, their columns and their leaf
# texts stay in the CPU's caches, which a whole chunk's rows do not (a fifth less CPU an entry).
ROW_BATCH = 1024
_CLUSTER_GAP = 1024  # ids further apart than this are read by separate range queries


@dataclass(frozen=True, slots=True)
class ChunkJob:
    """What every chunk check needs besides its range."""

    dialect: Dialect
    floors: Floors
    sizes: tuple[int, ...]  # every checkpoint size
    purged: frozenset[tuple[str, int]]  # rows a vouched purge removed: their logged leaf stands
    slack: timedelta
    height: int = CHUNK_HEIGHT
    bodies: bool = False  # check each logged delivery's raw body against its recorded SHA-256
    dropped_bodies: frozenset[int] = frozenset()  # delivery rows whose body a tombstone let go

    def chunks(self, tree_size: int) -> list[tuple[int, int]]:
        width = 1 << self.height
        return [(a, min(a + width, tree_size)) for a in range(0, tree_size, width)]


def check_chunk(fetch: Fetch, job: ChunkJob, start: int, end: int) -> CheckedChunk | None:
    """Leaves [start, end) against their rows; None when any of them needs a closer look,
    such as a row holding a value its column's reader refuses (only a change behind
    labledger's back stores one: the one-by-one check reads it leniently and reports it)."""
    with _no_cycle_collection():
        try:
            return _check_chunk(fetch, job, start, end)
        except UNREADABLE_ERRORS:
            return None
        except sqlite3.OperationalError as exc:
            if undecodable_text(exc):
                return None
            raise


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """The cycle collector paused: a chunk builds hundreds of thousands of short-lived
    tuples and lists, which would set it off again and again to walk every row still held,
    though reference counting frees them all (any cycle waits for the next collection)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _check_chunk(fetch: Fetch, job: ChunkJob, start: int, end: int) -> CheckedChunk | None:
    p = "?" if job.dialect.paramstyle == "qmark" else "%s"
    logged = fetch(
        "SELECT entry_type, entry_id, leaf_hash FROM log_entries "
        f"WHERE leaf_index >= {p} AND leaf_index < {p} ORDER BY leaf_index",
        (start, end),
    )
    if len(logged) != end - start:  # leaf_index is the key: fewer rows means a gap
        return None
    kinds, ids, hashes = zip(*logged, strict=True)
    leaves = list(hashes) if set(map(type, hashes)) == {bytes} else list(map(bytes, hashes))
    rows: dict[str, int] = {}
    for kind, positions in _by_kind(kinds):
        found = _check_kind(fetch, job, kind, start, positions, ids, leaves)
        if found is None:
            return None
        rows[kind] = found
    return summarize_chunk(start, leaves, job.sizes, rows)


def _by_kind(kinds: Sequence[str]) -> Iterator[tuple[str, Sequence[int]]]:
    """Each kind in the chunk with its leaves' positions, ascending."""
    if kinds.count(kinds[0]) == len(kinds):  # the log is mostly long runs of one kind
        yield kinds[0], range(len(kinds))
        return
    by_kind = sorted(range(len(kinds)), key=kinds.__getitem__)  # stable: leaf order kept
    for kind, group in itertools.groupby(by_kind, key=kinds.__getitem__):
        yield kind, list(group)


def _check_kind(
    fetch: Fetch,
    job: ChunkJob,
    kind: str,
    start: int,
    positions: Sequence[int],
    ids: Sequence[int],
    leaves: list[bytes],
) -> int | None:
    """How many of the kind's entries at `positions` have their row; None if any is off."""
    if kind not in ENTRY_TABLES:
        return None
    wanted = list(map(ids.__getitem__, positions))
    plan, logged = kind_plan(job.dialect, kind), list(map(leaves.__getitem__, positions))
    recomputed, moments = _recompute(fetch, plan, wanted, plan.has_json)
    if recomputed != logged and plan.has_json:  # JSON text stored other than canonical
        recomputed, moments = _recompute(fetch, plan, wanted, False)
    if recomputed != logged:
        for entry_id, row_hash, position in zip(wanted, recomputed, positions, strict=True):
            gone = row_hash is None and (kind, entry_id) in job.purged
            if row_hash != leaves[position] and not gone:
                return None
    indices = [start + p for p in positions]
    if backdated(job.floors, indices, moments):
        return None
    if kind == "delivery" and job.bodies and not _bodies_hold(fetch, job, wanted):
        return None
    return len(wanted) - recomputed.count(None)


def _bodies_hold(fetch: Fetch, job: ChunkJob, wanted: list[int]) -> bool:
    """Whether the raw body of each of these deliveries (and of any other row their id ranges
    hold) inflates to bytes with its recorded SHA-256, or is gone as a tombstone says."""
    p = "?" if job.dialect.paramstyle == "qmark" else "%s"
    sql = f"SELECT id, body_sha256, body_zlib FROM deliveries WHERE id BETWEEN {p} AND {p}"
    for bounds in _batches(_clusters(sorted(wanted))):
        for entry_id, recorded, body in fetch(sql, bounds):
            if not body:
                if entry_id not in job.dropped_bodies:
                    return False
                continue
            if inflated_sha256(body) != bytes(recorded):
                return False
    return True


def inflated_sha256(stored: object) -> bytes | None:
    """The SHA-256 of a stored raw body once inflated; None when it does not inflate (or is
    no bytes at all: a change behind labledger's back can store text there on SQLite)."""
    if not isinstance(stored, bytes | bytearray | memoryview):
        return None
    try:
        return hashlib.sha256(zlib.decompress(stored)).digest()
    except zlib.error:
        return None


def _recompute(
    fetch: Fetch, plan: KindPlan, wanted: list[int], json_as_stored: bool
) -> tuple[Sequence[bytes | None], Sequence[datetime | None]]:
    """The leaf hash and own time of each wanted row, in the order asked (None: no row).
    Rows are read and hashed a batch at a time, each batch let go before the next is read."""
    ids: list[int] = []
    hashes: list[bytes] = []
    moments: list[datetime | None] = []
    for bounds in _batches(_clusters(sorted(wanted))):
        found = plan.fetch(fetch, None, bounds, json_as_stored)
        ids += found.ids
        hashes += leaf_hashes_columns(plan.kind, found.columns, len(found.ids))
        moments += found.moments
    if ids == wanted:  # every row there, in log order
        return hashes, moments
    by_id = dict(zip(ids, zip(hashes, moments, strict=True), strict=True))
    found_rows = list(map(by_id.get, wanted, itertools.repeat((None, None))))
    return [h for h, _ in found_rows], [m for _, m in found_rows]


def _batches(clusters: Iterable[tuple[int, int]]) -> Iterator[tuple[int, int]]:
    """The clusters cut into ranges of at most ROW_BATCH ids."""
    for lo, hi in clusters:
        for start in range(lo, hi + 1, ROW_BATCH):
            yield start, min(start + ROW_BATCH - 1, hi)


def _clusters(ids: list[int]) -> Iterator[tuple[int, int]]:
    """Ranges [lo, hi] covering the sorted ids, split where they lie far apart."""
    if ids[-1] - ids[0] <= 2 * len(ids) + _CLUSTER_GAP:
        yield ids[0], ids[-1]
        return
    lo = previous = ids[0]
    for entry_id in ids[1:]:
        if entry_id - previous > _CLUSTER_GAP:
            yield lo, previous
            lo = entry_id
        previous = entry_id
    yield lo, previous


@dataclass(frozen=True, slots=True)
class CheckedLog:
    """The log as its chunks checked out: every leaf matched its row."""

    entries: int
    checkpoints: int
    tree_size: int
    root: bytes
    rows: dict[str, int]  # rows found for logged entries, by kind


def check_in_chunks(
    conn: Connection,
    job: ChunkJob,
    signed: list[SignedCheckpoint],
    progress: Callable[[int], None],
    workers: ChunkWorkers | None,
) -> CheckedLog | None:
    """The whole log, chunk by chunk; None as soon as something needs a closer look."""
    last, count = conn.exec_driver_sql("SELECT max(leaf_index), count(*) FROM log_entries").one()
    tree_size = 0 if last is None else last + 1
    if count != tree_size:
        return None
    chunks = job.chunks(tree_size)
    scratch = VerifyReport()  # any problem here is reported again, entry by entry
    verifier = LedgerVerifier(signed, scratch, job.slack)
    if workers is not None and len(chunks) > 1:
        results = workers.check(job, chunks, _snapshot(conn))
    else:
        fetch = driver_fetch(conn.connection.driver_connection)
        results = (check_chunk(fetch, job, start, end) for start, end in chunks)
    rows: Counter[str] = Counter()
    with translate_driver_errors(conn.dialect):
        for chunk in results:
            if chunk is None:
                return None
            verifier.add_chunk(chunk)
            rows.update(chunk.rows)
            progress(chunk.end - chunk.start + sum(chunk.rows.values()))
    verifier.finish()
    if scratch.problems:
        return None
    return CheckedLog(
        scratch.entries, scratch.checkpoints, scratch.tree_size, scratch.root, dict(rows)
    )


def _snapshot(conn: Connection) -> str | None:
    if conn.dialect.name != "postgresql":
        return None
    return str(conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one())


def unlogged_rows(conn: Connection, found: dict[str, int]) -> dict[str, list[int]]:
    """The ids of rows in no log entry, by kind, given how many rows logged entries found:
    a count per table first, then the rows past the newest logged id, and only when those do
    not account for the difference, every id."""
    p = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    leftover: dict[str, list[int]] = {}
    for kind, table in ENTRY_TABLES.items():
        count = conn.exec_driver_sql(f"SELECT count(*) FROM {table.name}").scalar_one()
        if count == found.get(kind, 0):
            continue
        newest = conn.exec_driver_sql(
            f"SELECT max(entry_id) FROM log_entries WHERE entry_type = {p}", (kind,)
        ).scalar()
        tail = (
            conn.exec_driver_sql(
                f"SELECT id FROM {table.name} WHERE id > {p} ORDER BY id",
                (-1 if newest is None else newest,),
            )
            .scalars()
            .all()
        )
        if count == found.get(kind, 0) + len(tail):
            leftover[kind] = list(tail)
            continue
        ids = conn.exec_driver_sql(f"SELECT id FROM {table.name}").scalars()
        logged = conn.exec_driver_sql(
            f"SELECT entry_id FROM log_entries WHERE entry_type = {p}", (kind,)
        ).scalars()
        leftover[kind] = sorted(set(ids) - set(logged))
    return leftover
