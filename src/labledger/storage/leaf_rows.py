"""Ledger rows as the leaf encoder reads them: the one place rows for leaves are loaded.

`entry_rows` (by id) and `all_entry_rows` (a whole table, in id order) hand back plain dicts
with exactly the values a SQLAlchemy `select` of the same columns returns (the dialect's own
result processors are applied), pushes with their `commits`. They run once-built SQL on the
driver's cursor: `verify` loads every row of the ledger, and per-call statement building plus
SQLAlchemy's row objects used to cost more than the hashing itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Dialect, Table

from labledger.storage.tables import (
    attempts,
    audit_events,
    deliveries,
    lab_sessions,
    push_commits,
    pushes,
    session_changes,
    verification_results,
)
from labledger.storage.tombstones import erased_commitments

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
_IN_CHUNK = 500  # ids per query: well under SQLite's bound-parameter limit

Convert = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Select:
    """One query over the driver's cursor and the conversions that make its rows typed."""

    sql: str
    names: tuple[str, ...]
    converters: tuple[tuple[int, Convert], ...]

    def rows(self, conn: Connection, params: Sequence[Any]) -> list[dict[str, Any]]:
        cursor = conn.connection.cursor()
        try:
            cursor.execute(self.sql, params)
            fetched = cursor.fetchall()
        finally:
            cursor.close()
        if not fetched:
            return []
        columns: list[Any] = list(zip(*fetched, strict=True))
        for i, convert in self.converters:
            columns[i] = map(convert, columns[i])
        names = self.names
        return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _placeholder(dialect: Dialect) -> str:
    return "?" if dialect.paramstyle == "qmark" else "%s"


def _select(dialect: Dialect, table: Table, columns: list[Any], where: str, order: str) -> _Select:
    converters = []
    for i, column in enumerate(columns):
        convert = column.type.dialect_impl(dialect).result_processor(dialect, None)
        if convert is not None:
            converters.append((i, convert))
    names = ", ".join(c.name for c in columns)
    sql = f"SELECT {names} FROM {table.name} WHERE {where} ORDER BY {order}"
    return _Select(sql, tuple(c.name for c in columns), tuple(converters))


@dataclass(frozen=True, slots=True)
class _KindQueries:
    by_ids: Callable[[int], _Select]  # for a number of ids
    after: _Select  # id > ?, first BATCH rows
    commits_by_ids: Callable[[int], _Select]
    commits_between: _Select  # push_id BETWEEN ? AND ?


_BUILT: dict[tuple[type[Dialect], str], _KindQueries] = {}


def _queries(dialect: Dialect, kind: str) -> _KindQueries:
    # Built once per dialect class, not per engine: tests and tools make many engines.
    key = (type(dialect), kind)
    if key not in _BUILT:
        _BUILT[key] = _build_queries(dialect, kind)
    return _BUILT[key]


def _build_queries(dialect: Dialect, kind: str) -> _KindQueries:
    table = ENTRY_TABLES[kind]
    # Raw bodies are checked separately; never load them just to hash a leaf.
    columns = [c for c in table.columns if c.name != "body_zlib"]
    carried = [push_commits.c.push_id, push_commits.c.commit_sha, push_commits.c.is_distinct]
    p = _placeholder(dialect)

    def among(column: str, count: int) -> str:
        return f"{column} IN ({', '.join([p] * count)})"

    return _KindQueries(
        functools.cache(lambda n: _select(dialect, table, columns, among("id", n), "id")),
        _select(dialect, table, columns, f"id > {p}", f"id LIMIT {BATCH}"),
        functools.cache(
            lambda n: _select(
                dialect, push_commits, carried, among("push_id", n), "push_id, position"
            )
        ),
        _select(
            dialect, push_commits, carried, f"push_id BETWEEN {p} AND {p}", "push_id, position"
        ),
    )


def _with_commits(rows: list[dict[str, Any]], commits: list[dict[str, Any]]) -> None:
    by_id = {row["id"]: row for row in rows}
    for row in rows:
        row["commits"] = []
    for c in commits:
        row = by_id.get(c["push_id"])
        if row is not None:
            row["commits"].append([c["commit_sha"], c["is_distinct"]])


def entry_rows(conn: Connection, kind: str, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The rows of one kind, as mappings ready for `leaf_bytes` (pushes with their commits)."""
    queries = _queries(conn.dialect, kind)
    found: dict[int, dict[str, Any]] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        chunk = list(ids[start : start + _IN_CHUNK])
        rows = queries.by_ids(len(chunk)).rows(conn, chunk)
        if kind == "push" and rows:
            _with_commits(rows, queries.commits_by_ids(len(chunk)).rows(conn, chunk))
        found.update((row["id"], row) for row in rows)
    if kind in ERASABLE and found:
        _with_erasures(found, erased_commitments(conn, kind, list(found)))
    return found


# Kinds whose personal fields erasure can blank; their leaves then take the commitment kept
# in the erasure's tombstone (storage/tombstones.py).
ERASABLE = ("attempt", "push")


def _with_erasures(rows: dict[int, dict[str, Any]], erased: dict[int, bytes]) -> None:
    for entry_id, commitment in erased.items():
        row = rows.get(entry_id)
        if row is not None:
            row["personal_sha256"] = commitment


def all_entry_rows(conn: Connection, kind: str) -> Iterator[dict[str, Any]]:
    """Every row of one kind in id order, in batches (for `verify` over millions of rows)."""
    queries = _queries(conn.dialect, kind)
    erased = erased_commitments(conn, kind) if kind in ERASABLE else {}
    after = -1
    while True:
        rows = queries.after.rows(conn, [after])
        if not rows:
            return
        if kind == "push":
            bounds = [rows[0]["id"], rows[-1]["id"]]
            _with_commits(rows, queries.commits_between.rows(conn, bounds))
        if erased:
            _with_erasures({row["id"]: row for row in rows}, erased)
        yield from rows
        after = rows[-1]["id"]
