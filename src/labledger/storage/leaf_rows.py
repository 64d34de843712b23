"""Ledger rows as the leaf encoder reads them: the one place rows for leaves are loaded.

`entry_rows` (by id), `lenient_rows_between` (an id range) and `all_entry_rows` (a whole
table, in id order) hand back plain dicts with exactly the values a SQLAlchemy `select` of the
same columns returns (the dialect's own result processors are applied), pushes with their
`commits`. They run once-written SQL in the driver's own parameter style (`exec_driver_sql`:
SQLAlchemy still translates errors and drops broken connections) and convert whole columns at
once: `verify` loads every row of the ledger (bench/tamper.py times it).

`lenient_rows_between`, `entry_row_batches` and `all_entry_rows` (for `verify`) read leniently: a
value its column's reader refuses, which only a change behind labledger's back can store (a
time that is no time, JSON that does not parse, text in a bytes column), comes back as an
`Unreadable`, which no leaf holds, and a PostgreSQL time is read as the server sends it in
binary (`timestamptz_send`), so that one no datetime holds (BC, past 9999, an infinity; the
driver refuses those) becomes a text no leaf holds. `verify` then reports such a row instead
of failing.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.exc import DBAPIError

from labledger.core.errors import UnreadableRows
from labledger.core.leaves import leaf_encoder
from labledger.storage.tables import (
    UtcDateTime,
    attempts,
    audit_events,
    deliveries,
    lab_sessions,
    push_commits,
    pushes,
    session_changes,
    tombstones,
    verification_results,
)

ENTRY_TABLES: dict[str, Table] = {
    "session": lab_sessions,
    "delivery": deliveries,
    "push": pushes,
    "attempt": attempts,
    "audit": audit_events,
    "verification": verification_results,
    "session_change": session_changes,
}
BATCH = 5000
IN_CHUNK = 500  # ids per query on SQLite: well under its bound-parameter limit
ARRAY_CHUNK = 10_000  # ids per query on PostgreSQL, sent as one array parameter
# Kinds whose personal fields erasure can blank; their leaves then take the commitment kept
# in the erasure's tombstone (storage/tombstones.py), joined in as `personal_sha256`.
ERASABLE = ("attempt", "push")
_ERASED = "personal_sha256"
# The column holding each kind's own time (back-dating is judged on it).
TIME_COLUMN = {
    "session": "created_at",
    "delivery": "received_at",
    "attempt": "received_at",
    "audit": "occurred_at",
    "verification": "reported_at",
    "session_change": "changed_at",
}


Convert = Callable[[Any], Any]
# What a column's reader or the leaf encoder raises on a value labledger never writes (only a
# change behind its back stores one): a time that is no time, JSON that does not parse or holds
# a float, text where bytes belong, a number out of range.
UNREADABLE_ERRORS = (ValueError, TypeError, OverflowError)
# A PostgreSQL time as the server sends it in binary: microseconds since 2000-01-01 00:00 UTC,
# 8 bytes big-endian and signed, whatever the session's time zone (the extremes stand for
# -infinity and infinity). Schema-qualified, so that no function of the same name can stand in.
POSTGRES_TIME = "pg_catalog.timestamptz_send({})"
_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def postgres_time(sent: bytes | None) -> datetime | str | None:
    """The time PostgreSQL sent; one no datetime holds (a time BC, past 9999, an infinity)
    becomes a text that no leaf holds where a time belongs, so that its row never checks out."""
    if sent is None:
        return None
    micros = int.from_bytes(sent, "big", signed=True)
    try:
        return _POSTGRES_EPOCH + timedelta(microseconds=micros)
    except OverflowError:
        return f"PostgreSQL time {micros} us after 2000-01-01 UTC"


# How sqlite3 says a stored text is not UTF-8 (it raises OperationalError, as for much else)
_NOT_UTF8 = "Could not decode to UTF-8"


def undecodable_text(exc: BaseException) -> bool:
    """Whether `exc` (sqlite3's, or SQLAlchemy's wrapping it) says a stored text is not UTF-8."""
    driver_error = getattr(exc, "orig", exc)
    return isinstance(driver_error, sqlite3.OperationalError) and str(driver_error).startswith(
        _NOT_UTF8
    )


class Unreadable:
    """A stored value its column's reader refused, with why: no leaf holds one."""

    __slots__ = ("error", "raw")

    def __init__(self, raw: Any, error: Exception) -> None:
        self.raw, self.error = raw, error

    def __repr__(self) -> str:
        return f"Unreadable({self.raw!r}, {self.error!r})"


def _leniently(convert: Convert, value: Any) -> Any:
    try:
        return convert(value)
    except UNREADABLE_ERRORS as exc:
        return Unreadable(value, exc)


def _converted(convert: Convert, values: Sequence[Any], lenient: bool) -> list[Any]:
    """A column's values as its reader makes them; `lenient`: a value the reader refuses
    kept as an `Unreadable` (the whole column read again value by value, which only a change
    behind labledger's back makes necessary)."""
    if not lenient:
        return list(map(convert, values))
    try:
        return list(map(convert, values))
    except UNREADABLE_ERRORS:
        return [_leniently(convert, value) for value in values]


@dataclass(frozen=True, slots=True)
class _Select:
    """One query in the driver's SQL and the conversions that make its rows typed."""

    sql: str
    names: tuple[str, ...]
    converters: tuple[tuple[int, Convert, bool], ...]  # column, reader, lenient

    def rows(self, conn: Connection, params: Sequence[Any]) -> list[dict[str, Any]]:
        fetched = conn.exec_driver_sql(self.sql, tuple(params)).all()
        if not fetched:
            return []
        columns: list[Any] = list(zip(*fetched, strict=True))
        for i, convert, lenient in self.converters:
            columns[i] = _converted(convert, columns[i], lenient)
        names = self.names
        rows = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
        if _ERASED in names:  # only an erased row carries its stored commitment
            for row in rows:
                if row[_ERASED] is None:
                    del row[_ERASED]
        return rows


def _select(dialect: Dialect, kind: str, where: str, order: str, lenient: bool = False) -> _Select:
    table = ENTRY_TABLES[kind]
    # Raw bodies are checked separately; never load them just to hash a leaf.
    columns = [c for c in table.columns if c.name != "body_zlib"]
    source = table.name
    if kind in ERASABLE:
        columns.append(tombstones.c.personal_sha256)
        source += (
            f" LEFT JOIN tombstones ON tombstones.entry_type = '{kind}'"
            f" AND tombstones.entry_id = {table.name}.id AND tombstones.what = 'personal'"
        )
    return _driver_select(dialect, columns, source, where, order, lenient)


def _driver_select(
    dialect: Dialect,
    columns: list[Any],
    source: str,
    where: str,
    order: str,
    lenient: bool = False,
) -> _Select:
    """`lenient`: PostgreSQL times read as sent (`postgres_time`), and a value the column's
    reader refuses kept as an `Unreadable`."""
    converters: list[tuple[int, Convert, bool]] = []
    selected = [f"{c.table.name}.{c.name}" for c in columns]
    for i, column in enumerate(columns):
        if lenient and dialect.name == "postgresql" and isinstance(column.type, UtcDateTime):
            selected[i] = POSTGRES_TIME.format(selected[i])
            converters.append((i, postgres_time, False))
            continue
        convert = column.type.dialect_impl(dialect).result_processor(dialect, None)
        if convert is not None:
            converters.append((i, convert, lenient))
    sql = f"SELECT {', '.join(selected)} FROM {source} WHERE {where} ORDER BY {order}"
    return _Select(sql, tuple(c.name for c in columns), tuple(converters))


@dataclass(frozen=True, slots=True)
class _KindQueries:
    by_ids: Callable[[int], _Select]  # for a number of ids
    after: _Select  # id > ?, first BATCH rows, read leniently
    between: _Select  # id BETWEEN ? AND ?, read leniently
    commits_by_ids: Callable[[int], _Select]
    commits_between: _Select  # push_id BETWEEN ? AND ?
    chunk: int  # ids per `by_ids` query
    as_array: bool  # PostgreSQL: the ids go as one array parameter


_BUILT: dict[tuple[type[Dialect], str], _KindQueries] = {}


def _queries(dialect: Dialect, kind: str) -> _KindQueries:
    # Built once per dialect class, not per engine: tests and tools make many engines.
    key = (type(dialect), kind)
    if key not in _BUILT:
        _BUILT[key] = _build_queries(dialect, kind)
    return _BUILT[key]


def _build_queries(dialect: Dialect, kind: str) -> _KindQueries:
    table = ENTRY_TABLES[kind].name
    carried = [push_commits.c.push_id, push_commits.c.commit_sha, push_commits.c.is_distinct]
    as_array = dialect.name == "postgresql"
    p = "?" if dialect.paramstyle == "qmark" else "%s"

    def among(column: str, count: int) -> str:
        return f"{column} = ANY({p})" if as_array else f"{column} IN ({', '.join([p] * count)})"

    def commits(where: str) -> _Select:
        order = "push_commits.push_id, push_commits.position"
        return _driver_select(dialect, carried, "push_commits", where, order)

    return _KindQueries(
        functools.cache(lambda n: _select(dialect, kind, among(f"{table}.id", n), f"{table}.id")),
        _select(dialect, kind, f"{table}.id > {p}", f"{table}.id LIMIT {BATCH}", True),
        _select(dialect, kind, f"{table}.id BETWEEN {p} AND {p}", f"{table}.id", True),
        functools.cache(lambda n: commits(among("push_commits.push_id", n))),
        commits(f"push_commits.push_id BETWEEN {p} AND {p}"),
        ARRAY_CHUNK if as_array else IN_CHUNK,
        as_array,
    )


def _with_commits(rows: list[dict[str, Any]], commits: list[dict[str, Any]]) -> None:
    by_id = {row["id"]: row for row in rows}
    for row in rows:
        row["commits"] = []
    for c in commits:
        pushed = by_id.get(c["push_id"])
        if pushed is not None:
            pushed["commits"].append([c["commit_sha"], c["is_distinct"]])


def entry_rows(conn: Connection, kind: str, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The rows of one kind, as mappings ready for `leaf_bytes` (pushes with their commits,
    erased rows with the personal commitment their erasure kept). UnreadableRows when one
    holds a value its column's reader refuses (only a change behind labledger's back stores
    one), for receipts, exports, archives and erasures to stop on with a clear error."""
    try:
        return _entry_rows(conn, kind, ids)
    except DBAPIError as exc:
        if not undecodable_text(exc):
            raise
        raise UnreadableRows(ENTRY_TABLES[kind].name, ids, exc.orig or exc) from exc
    except UNREADABLE_ERRORS as exc:
        raise UnreadableRows(ENTRY_TABLES[kind].name, ids, exc) from exc


def entry_leaves(conn: Connection, kind: str, ids: Sequence[int]) -> dict[int, bytes]:
    """The leaf bytes of the rows of one kind that exist, by id; UnreadableRows as
    `entry_rows`, and also when a row read holds a value no leaf holds (a float in its JSON)."""
    rows = entry_rows(conn, kind, ids)
    encode = leaf_encoder(kind)
    try:
        return {entry_id: encode(row) for entry_id, row in rows.items()}
    except UNREADABLE_ERRORS as exc:
        raise UnreadableRows(ENTRY_TABLES[kind].name, ids, exc) from exc


def _entry_rows(conn: Connection, kind: str, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    queries = _queries(conn.dialect, kind)
    found: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), queries.chunk):
        chunk = list(ids[start : start + queries.chunk])
        params = [chunk] if queries.as_array else chunk
        rows = queries.by_ids(len(chunk)).rows(conn, params)
        if kind == "push" and rows:
            _with_commits(rows, queries.commits_by_ids(len(chunk)).rows(conn, params))
        found.update((row["id"], row) for row in rows)
    return found


def entry_row_batches(conn: Connection, kind: str) -> Iterator[list[dict[str, Any]]]:
    """Every row of one kind in id order, a batch of up to BATCH rows at a time."""
    queries = _queries(conn.dialect, kind)
    after = -1
    while True:
        rows = queries.after.rows(conn, [after])
        if not rows:
            return
        if kind == "push":
            bounds = [rows[0]["id"], rows[-1]["id"]]
            _with_commits(rows, queries.commits_between.rows(conn, bounds))
        yield rows
        after = rows[-1]["id"]


def lenient_rows_between(conn: Connection, kind: str, lo: int, hi: int) -> list[dict[str, Any]]:
    """The rows of one kind with ids in [lo, hi], in id order, pushes with their commits, read
    leniently as `entry_row_batches` reads them."""
    queries = _queries(conn.dialect, kind)
    rows = queries.between.rows(conn, [lo, hi])
    if kind == "push" and rows:
        _with_commits(rows, queries.commits_between.rows(conn, [lo, hi]))
    return rows


def all_entry_rows(conn: Connection, kind: str) -> Iterator[dict[str, Any]]:
    """Every row of one kind in id order (for `verify` over millions of rows)."""
    for rows in entry_row_batches(conn, kind):
        yield from rows


def lenient_rows_among(
    conn: Connection, kind: str, column: str, ids: Sequence[int]
) -> list[dict[str, Any]]:
    """The rows of one kind (pushes without their commits) whose `column` is among `ids`, read
    leniently as `entry_row_batches` reads them, a range of `column` at a time: for `verify`,
    which must name a row holding a value labledger never writes rather than stop on it."""
    if not ids:
        return []
    table = ENTRY_TABLES[kind].name
    p = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    where = f"{table}.{column} BETWEEN {p} AND {p}"
    query = _select(conn.dialect, kind, where, f"{table}.id", True)
    wanted = set(ids)
    found: list[dict[str, Any]] = []
    for lo, hi in id_ranges(sorted(wanted)):
        found += [row for row in query.rows(conn, [lo, hi]) if row[column] in wanted]
    return found


def id_ranges(ids: Sequence[int], gap: int = 1024) -> Iterator[tuple[int, int]]:
    """Ranges [lo, hi] covering the sorted ids, split where they lie more than `gap` apart."""
    lo = previous = ids[0]
    for entry_id in ids[1:]:
        if entry_id - previous > gap:
            yield lo, previous
            lo = entry_id
        previous = entry_id
    yield lo, previous
