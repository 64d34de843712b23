"""`labledger verify` against the database: recompute every leaf from the stored rows.

One algorithm, streaming: the log is read in leaf order, `BATCH` entries at a time; the rows
those entries name are read by id range (storage/leaf_rows.py, leniently, so that a value
labledger never writes is reported, not fatal), each leaf is written again by the one encoder
(core/leaves.py) and fed, with its row's own time, to the core verifier, which rebuilds the
tree and compares every signed checkpoint. Then rows in no log entry, raw bodies against their
recorded SHA-256, and each row against the evidence it came from (storage/evidence_check.py).
"""

from __future__ import annotations

import hashlib
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import DBAPIError

from labledger.core.leaves import leaf_encoder
from labledger.core.merkle import leaf_hash
from labledger.core.note import VerifierKey
from labledger.core.verify import (
    DEFAULT_BACKDATE_SLACK,
    LedgerVerifier,
    Problem,
    VerifyReport,
    open_checkpoints,
)
from labledger.storage.evidence_check import check_evidence
from labledger.storage.leaf_rows import (
    BATCH,
    ENTRY_TABLES,
    TIME_COLUMN,
    UNREADABLE_ERRORS,
    id_ranges,
    lenient_rows_between,
    undecodable_text,
)
from labledger.storage.sql_store import translate_db_errors
from labledger.storage.tables import checkpoints, deliveries, log_entries, log_queue
from labledger.storage.tombstones import vouched_removals

Progress = Callable[[int], None]
TABLE_OF = {kind: table.name for kind, table in ENTRY_TABLES.items()}
Recomputed = dict[tuple[str, int], tuple[bytes, datetime | None]]
_GONE: tuple[None, None] = (None, None)
_T = TypeVar("_T")


def verify_database(
    engine: Engine,
    key: VerifierKey,
    witnesses: list[tuple[str, str]] = (),  # type: ignore[assignment]
    *,
    check_bodies: bool = True,
    backdate_slack: timedelta = DEFAULT_BACKDATE_SLACK,
    progress: Progress = lambda n: None,
) -> VerifyReport:
    """Rebuild the tree from the rows as they are now, check every signed checkpoint, and
    re-derive each row from its evidence; every problem is named in the report."""
    report = VerifyReport()
    with translate_db_errors(), _reading(engine) as conn:
        _verify_log(conn, report, key, witnesses, check_bodies, backdate_slack, progress)
        _reading_any_text(conn, lambda: check_evidence(conn, report, check_bodies))
    return report


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


def _verify_log(
    conn: Connection,
    report: VerifyReport,
    key: VerifierKey,
    witnesses: list[tuple[str, str]],
    check_bodies: bool,
    backdate_slack: timedelta,
    progress: Progress,
) -> None:
    notes = [(f"checkpoint {r.tree_size}", r.note) for r in conn.execute(select(checkpoints))]
    signed = open_checkpoints([*notes, *witnesses], key, report)
    removed = vouched_removals(conn, report)
    verifier = LedgerVerifier(signed, report, backdate_slack)
    found: Counter[str] = Counter()  # rows found for logged entries, by kind
    for batch in _log_batches(conn):
        recomputed = _recompute(conn, batch)
        for index, kind, entry_id, logged in batch:
            row_hash, moment = recomputed.get((kind, entry_id), _GONE)
            if row_hash is not None:
                found[kind] += 1
            elif (kind, entry_id) in removed.rows:
                row_hash = logged  # purged on purpose: its leaf hash stands for it
            verifier.add(index, TABLE_OF.get(kind, kind), entry_id, logged, row_hash, moment)
        progress(len(batch) + len(recomputed))
    verifier.finish()
    queued = {(q.entry_type, q.entry_id) for q in conn.execute(select(log_queue))}
    _report_unlogged(report, _unlogged_rows(conn, found), queued)
    if check_bodies:
        _check_bodies(conn, report, removed.bodies)


def _log_batches(conn: Connection) -> Iterator[list[tuple[int, str, int, bytes]]]:
    """(leaf_index, entry_type, entry_id, leaf_hash) in leaf order, BATCH entries at a time."""
    query = select(
        log_entries.c.leaf_index,
        log_entries.c.entry_type,
        log_entries.c.entry_id,
        log_entries.c.leaf_hash,
    ).order_by(log_entries.c.leaf_index)
    after = -1
    while True:
        rows = conn.execute(query.where(log_entries.c.leaf_index > after).limit(BATCH)).all()
        if not rows:
            return
        yield [(i, kind, entry_id, bytes(h)) for i, kind, entry_id, h in rows]
        after = rows[-1][0]


def _recompute(conn: Connection, batch: Sequence[tuple[int, str, int, bytes]]) -> Recomputed:
    """The leaf hash and own time of each row the batch names that exists, by kind and id."""
    wanted: dict[str, list[int]] = {}
    for _, kind, entry_id, _ in batch:
        if kind in ENTRY_TABLES:
            wanted.setdefault(kind, []).append(entry_id)
    found: Recomputed = {}
    for kind, ids in wanted.items():
        keep = set(ids)
        time_column = TIME_COLUMN.get(kind)
        encode = leaf_encoder(kind)
        for lo, hi in id_ranges(sorted(keep)):
            rows = _reading_any_text(conn, partial(lenient_rows_between, conn, kind, lo, hi))
            for row in rows:
                if row["id"] in keep:
                    moment = _moment(row[time_column]) if time_column else None
                    found[kind, row["id"]] = (_row_hash(kind, row, encode), moment)
    return found


def _row_hash(kind: str, row: Mapping[str, Any], encode: Callable[[Any], bytes]) -> bytes:
    """The row's leaf hash; for a row whose leaf cannot be written (it holds an `Unreadable`,
    a float, text that is not UTF-8), the hash of what it holds instead, which matches no
    leaf: a leaf begins with its version line, and this does not."""
    try:
        return leaf_hash(encode(row))
    except UNREADABLE_ERRORS as exc:
        held = f"unreadable {kind} {row.get('id')!r}: {exc!r} in {row!r}"
        return leaf_hash(held.encode("utf-8", "backslashreplace"))


def _moment(value: Any) -> datetime | None:
    # a time no datetime holds (read as text, see leaf_rows) is no moment: its row does not
    # match its leaf anyway
    return value if type(value) is datetime else None


def _reading_any_text(conn: Connection, read: Callable[[], _T]) -> _T:
    """`read()`; on SQLite, if it meets text that is not UTF-8 (only a change behind
    labledger's back stores it; sqlite3 refuses to read it), `read()` again with bad bytes
    read as lone surrogates, which no leaf holds (a leaf is UTF-8), instead of failing."""
    try:
        return read()
    except DBAPIError as exc:
        if not undecodable_text(exc):
            raise
    with _undecodable_text_kept(conn):
        return read()


@contextmanager
def _undecodable_text_kept(conn: Connection) -> Iterator[None]:
    raw: Any = conn.connection.driver_connection
    previous = raw.text_factory
    raw.text_factory = _utf8_or_escaped
    try:
        yield
    finally:
        raw.text_factory = previous


def _utf8_or_escaped(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _unlogged_rows(conn: Connection, found: Mapping[str, int]) -> dict[str, list[int]]:
    """The ids of rows in no log entry, by kind, given how many rows logged entries found
    (an entry names one row, `UNIQUE(entry_type, entry_id)`): a count per table first, then
    the rows past the newest logged id, and only when those do not account for the
    difference, every id."""
    leftover: dict[str, list[int]] = {}
    for kind, table in ENTRY_TABLES.items():
        count = conn.execute(select(func.count()).select_from(table)).scalar_one()
        if count == found.get(kind, 0):
            continue
        of_kind = log_entries.c.entry_type == kind
        newest = conn.execute(select(func.max(log_entries.c.entry_id)).where(of_kind)).scalar()
        newer = table.c.id > (-1 if newest is None else newest)
        tail = list(conn.execute(select(table.c.id).where(newer).order_by(table.c.id)).scalars())
        if count == found.get(kind, 0) + len(tail):
            leftover[kind] = tail
            continue
        ids = conn.execute(select(table.c.id)).scalars()
        logged = conn.execute(select(log_entries.c.entry_id).where(of_kind)).scalars()
        leftover[kind] = sorted(set(ids) - set(logged))
    return leftover


def inflated_sha256(stored: object) -> bytes | None:
    """The SHA-256 of a stored raw body once inflated; None when it does not inflate (or is
    no bytes at all: a change behind labledger's back can store text there on SQLite)."""
    if not isinstance(stored, bytes | bytearray | memoryview):
        return None
    try:
        return hashlib.sha256(zlib.decompress(stored)).digest()
    except zlib.error:
        return None


def _check_bodies(conn: Connection, report: VerifyReport, dropped: set[int]) -> None:
    """Every delivery's raw body against its recorded SHA-256."""
    query = select(deliveries.c.id, deliveries.c.body_sha256, deliveries.c.body_zlib)
    rows: Iterable[Any] = conn.execution_options(yield_per=1000).execute(query)
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
