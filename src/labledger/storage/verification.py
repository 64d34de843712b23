"""`labledger verify` against the database: recompute every leaf from the stored rows."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, select

from labledger.core.leaf_batches import leaf_bytes_many
from labledger.core.leaves import leaf_bytes
from labledger.core.merkle import leaf_hash
from labledger.core.note import VerifierKey
from labledger.core.verify import (
    DEFAULT_BACKDATE_SLACK,
    LedgerVerifier,
    Problem,
    SignedCheckpoint,
    VerifyReport,
    open_checkpoints,
    open_notes,
)
from labledger.core.verify_chunks import backdate_floors
from labledger.storage.evidence_check import check_evidence
from labledger.storage.leaf_rows import (
    BATCH,
    ENTRY_TABLES,
    IN_CHUNK,
    TIME_COLUMN,
    UNREADABLE_ERRORS,
    entry_row_batches,
)
from labledger.storage.sql_store import translate_db_errors
from labledger.storage.tables import checkpoints, deliveries, log_queue
from labledger.storage.tombstones import Removed, vouched_removals
from labledger.storage.verify_chunks import (
    CHUNK_HEIGHT,
    ChunkJob,
    check_in_chunks,
    inflated_sha256,
    unlogged_rows,
)
from labledger.storage.verify_workers import ChunkWorkers

Progress = Callable[[int], None]
TABLE_OF = {kind: table.name for kind, table in ENTRY_TABLES.items()}
Recomputed = dict[str, dict[int, tuple[bytes, datetime | None]]]
_GONE: tuple[None, None] = (None, None)


def verify_database(
    engine: Engine,
    key: VerifierKey,
    witnesses: list[tuple[str, str]] = (),  # type: ignore[assignment]
    *,
    check_bodies: bool = True,
    backdate_slack: timedelta = DEFAULT_BACKDATE_SLACK,
    progress: Progress = lambda n: None,
    processes: int | None = None,
    chunk_height: int = CHUNK_HEIGHT,
    derive: bool = True,
) -> VerifyReport:
    """Rebuild the tree from the rows as they are now and check every signed checkpoint.

    The log is checked in chunks of 2**chunk_height leaves, by `processes` worker processes
    (default: one per available CPU) when there are several chunks; where a chunk does not
    check out, every entry is checked again one by one to report what is wrong. Then each
    row is re-derived from its evidence (storage/evidence_check.py); `derive=False` skips that, for
    benchmarks whose bulk-loaded rows no delivery could have made (`labledger verify` always
    derives).
    """
    report = VerifyReport()
    with translate_db_errors():
        workers = _start_workers(engine, processes, chunk_height)
        try:
            with _reading(engine) as conn:
                _verify(conn, report, key, witnesses, check_bodies, backdate_slack, progress,
                        workers, chunk_height)  # fmt: skip
                if derive:
                    with _undecodable_text_kept(conn):
                        check_evidence(conn, report, check_bodies)
        finally:
            if workers is not None:
                workers.close()
    return report


def _start_workers(engine: Engine, processes: int | None, height: int) -> ChunkWorkers | None:
    """Worker processes, forked now (before any read transaction), if they have work."""
    processes = len(os.sched_getaffinity(0)) if processes is None else processes
    if processes < 2 or engine.dialect.name not in ("sqlite", "postgresql"):
        return None
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        return None
    with engine.connect() as conn:
        last = conn.exec_driver_sql("SELECT max(leaf_index) FROM log_entries").scalar()
    if last is None or last < 1 << height:  # one chunk: no one to share it with
        return None
    return ChunkWorkers(engine, processes)


@contextmanager
def _reading(engine: Engine) -> Iterator[Connection]:
    """One transaction that sees one state of the database throughout."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")  # times as the leaves write them
            yield conn


def _verify(
    conn: Connection,
    report: VerifyReport,
    key: VerifierKey,
    witnesses: list[tuple[str, str]],
    check_bodies: bool,
    backdate_slack: timedelta,
    progress: Progress,
    workers: ChunkWorkers | None,
    height: int,
) -> None:
    notes = [(f"checkpoint {r.tree_size}", r.note) for r in conn.execute(select(checkpoints))]
    opener = workers.open_notes if workers is not None else open_notes
    signed = open_checkpoints([*notes, *witnesses], key, report, opener)
    removed = vouched_removals(conn, report)
    floors = backdate_floors([(s.checkpoint.size, s.timestamp) for s in signed], backdate_slack)
    sizes = tuple(sorted({s.checkpoint.size for s in signed}))
    job = ChunkJob(conn.dialect, floors, sizes, frozenset(removed.rows), backdate_slack, height,
                   check_bodies, frozenset(removed.bodies))  # fmt: skip
    checked = check_in_chunks(conn, job, signed, progress, workers)
    queued = {(q.entry_type, q.entry_id) for q in conn.execute(select(log_queue))}
    if checked is not None:
        report.entries, report.checkpoints = checked.entries, checked.checkpoints
        report.tree_size, report.root = checked.tree_size, checked.root
        unlogged = unlogged_rows(conn, checked.rows)
        _report_unlogged(report, unlogged, queued)
        if check_bodies:  # the chunks checked the bodies of every logged delivery
            _check_bodies(conn, report, removed.bodies, only=unlogged.get("delivery", []))
        return
    with _undecodable_text_kept(conn):
        _verify_entry_by_entry(conn, report, signed, removed, backdate_slack, progress, queued)
    if check_bodies:
        _check_bodies(conn, report, removed.bodies)


def _verify_entry_by_entry(
    conn: Connection,
    report: VerifyReport,
    signed: list[SignedCheckpoint],
    removed: Removed,
    backdate_slack: timedelta,
    progress: Progress,
    queued: set[tuple[str, int]],
) -> None:
    """Every row recomputed, every leaf compared on its own: each problem named."""
    recomputed = _recompute(conn, progress)
    verifier = LedgerVerifier(signed, report, backdate_slack)
    for n, (index, kind, entry_id, logged) in enumerate(_log_entries(conn), start=1):
        row_hash, moment = recomputed.get(kind, {}).pop(entry_id, _GONE)
        if row_hash is None and (kind, entry_id) in removed.rows:
            row_hash = bytes(logged)  # purged on purpose: its leaf hash stands for it
        table = TABLE_OF.get(kind, kind)
        verifier.add(index, table, entry_id, bytes(logged), row_hash, moment)
        if n % BATCH == 0:
            progress(BATCH)
    verifier.finish()
    _report_unlogged(report, recomputed, queued)


def _recompute(conn: Any, progress: Progress) -> Recomputed:
    """Every row's leaf hash and own time, by kind and id."""
    found: Recomputed = {}
    for kind in ENTRY_TABLES:
        time_column = TIME_COLUMN.get(kind)
        hashes: dict[int, tuple[bytes, datetime | None]] = {}
        found[kind] = hashes
        for rows in entry_row_batches(conn, kind):
            ids = [row["id"] for row in rows]
            # a time no datetime holds (read as text, see leaf_rows) is no moment: its row
            # does not match its leaf anyway
            moments = [_moment(row[time_column]) if time_column else None for row in rows]
            leaves = _leaf_hashes(kind, rows)
            hashes.update(zip(ids, zip(leaves, moments, strict=True), strict=True))
            progress(len(rows))
    return found


def _leaf_hashes(kind: str, rows: list[dict[str, Any]]) -> list[bytes]:
    """Each row's leaf hash; for a row whose leaf cannot be written (it holds an `Unreadable`,
    a float, text that is not UTF-8), the SHA-256 of what it holds instead, which matches no
    leaf: a leaf begins with its version line, and this does not."""
    try:
        return list(map(leaf_hash, leaf_bytes_many(kind, rows)))
    except UNREADABLE_ERRORS:
        return [_row_hash(kind, row) for row in rows]


def _row_hash(kind: str, row: dict[str, Any]) -> bytes:
    try:
        return leaf_hash(leaf_bytes(kind, row))
    except UNREADABLE_ERRORS as exc:
        held = f"unreadable {kind} {row.get('id')!r}: {exc!r} in {row!r}"
        return leaf_hash(held.encode("utf-8", "backslashreplace"))


@contextmanager
def _undecodable_text_kept(conn: Connection) -> Iterator[None]:
    """On SQLite, text that is not UTF-8 (only a change behind labledger's back stores it;
    sqlite3 refuses to read it) read with its bad bytes as lone surrogates, which no leaf
    holds (a leaf is UTF-8), instead of failing the query."""
    raw = conn.connection.driver_connection
    if conn.dialect.name != "sqlite" or raw is None:
        yield
        return
    previous = raw.text_factory
    raw.text_factory = _utf8_or_escaped
    try:
        yield
    finally:
        raw.text_factory = previous


def _utf8_or_escaped(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _moment(value: Any) -> datetime | None:
    return value if type(value) is datetime else None


def _log_entries(conn: Any) -> Iterator[Any]:
    """(leaf_index, entry_type, entry_id, leaf_hash) in leaf order, in driver SQL, streamed."""
    rows = conn.execution_options(yield_per=BATCH).exec_driver_sql(
        "SELECT leaf_index, entry_type, entry_id, leaf_hash FROM log_entries ORDER BY leaf_index"
    )
    for batch in rows.partitions():
        yield from batch


def _check_bodies(
    conn: Any, report: VerifyReport, dropped: set[int], only: list[int] | None = None
) -> None:
    """Every delivery's raw body (or `only` those rows') against its recorded SHA-256."""
    query = select(deliveries.c.id, deliveries.c.body_sha256, deliveries.c.body_zlib)
    if only is None:
        rows: Iterable[Any] = conn.execution_options(yield_per=1000).execute(query)
    else:
        rows = itertools.chain.from_iterable(
            conn.execute(query.where(deliveries.c.id.in_(only[at : at + IN_CHUNK])))
            for at in range(0, len(only), IN_CHUNK)
        )
    for row in rows:
        if not row.body_zlib:  # retention drops bodies, and says so in a tombstone
            if row.id not in dropped:
                report.problems.append(
                    Problem(
                        "body_missing",
                        f"raw body of delivery row {row.id} is gone with no purge or erasure "
                        "to account for it",
                        table="deliveries",
                        entry_id=row.id,
                    )
                )
            continue
        actual = inflated_sha256(row.body_zlib)  # None: as much a mismatch as other bytes
        recorded = row.body_sha256
        if not isinstance(recorded, bytes | bytearray | memoryview):  # text stored by hand
            recorded = str(recorded).encode("utf-8", "backslashreplace")
        if actual != bytes(recorded):
            report.problems.append(
                Problem(
                    "body_mismatch",
                    f"raw body of delivery row {row.id} does not match its recorded sha256"
                    + ("" if actual else " (its stored bytes do not inflate)"),
                    table="deliveries",
                    entry_id=row.id,
                    expected=bytes(recorded).hex(),
                    actual=actual.hex() if actual else None,
                )
            )


def _report_unlogged(
    report: VerifyReport, leftover: Mapping[str, Iterable[int]], queued: set[tuple[str, int]]
) -> None:
    unlogged = sorted((kind, entry_id) for kind, rows in leftover.items() for entry_id in rows)
    for kind, entry_id in unlogged:
        if (kind, entry_id) in queued:
            report.pending += 1
            continue
        report.problems.append(
            Problem(
                "unlogged_row",
                f"{TABLE_OF[kind]} {entry_id} is in the database but not in the log "
                "(inserted behind labledger's back?)",
                table=TABLE_OF[kind],
                entry_id=entry_id,
            )
        )
