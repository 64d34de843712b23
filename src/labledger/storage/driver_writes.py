"""The ingest path's INSERTs, written once per table and number of rows, run on the DBAPI cursor.

Each webhook runs half a dozen INSERTs. Through `Connection.execute` every one of them paid
about 67 µs of SQLAlchemy's own work (an execution context, parameter processing, a result
object) on top of the driver's. Here a statement is a plain multi-row INSERT written from the
table's SQLAlchemy definition and kept; its values go through the bind processors of the
column types SQLAlchemy would apply (UtcDateTime, JSON, Boolean...), so the rows stored are
the same, byte for byte (a contract test compares them with rows written through SQLAlchemy).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, Table

Row = Mapping[str, Any]

# Rows a multi-row INSERT carries at most: SQLite binds at most 32,766 values a statement, and
# an attempt row binds 19. Longer lists go in several statements.
MAX_ROWS = 256


@dataclass(frozen=True, slots=True)
class DriverInsert:
    """One INSERT of a number of rows: its SQL, and where each parameter comes from."""

    sql: str
    row_of: tuple[int, ...]  # the row of each parameter, in order
    columns: tuple[str, ...]  # its column
    binds: tuple[Callable[[Any], Any] | None, ...]  # that column type's bind processor

    def parameters(self, rows: Sequence[Row]) -> list[Any]:
        return [
            rows[n][column] if bind is None else bind(rows[n][column])
            for n, column, bind in zip(self.row_of, self.columns, self.binds, strict=True)
        ]


def compile_insert(
    dialect: Dialect,
    table: Table,
    columns: Sequence[str],
    rows: int = 1,
    conflict_keys: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> DriverInsert:
    """INSERT INTO table (columns) VALUES (...) x rows [ON CONFLICT DO NOTHING] [RETURNING],
    with positional parameters: `?` for sqlite3; `$n::type` for psycopg's raw cursor, which
    sends the statement as written (its default cursor parses every statement of more than
    50 parameters again at each execution to rewrite `%s`)."""
    quote = dialect.identifier_preparer.quote
    if dialect.name == "postgresql":
        casts = [f"::{table.c[c].type.compile(dialect=dialect)}" for c in columns]
        groups = [
            ", ".join(f"${n * len(columns) + k + 1}{cast}" for k, cast in enumerate(casts))
            for n in range(rows)
        ]
    else:
        groups = [", ".join("?" * len(columns))] * rows
    sql = f"INSERT INTO {quote(table.name)} ({', '.join(map(quote, columns))}) VALUES "
    sql += ", ".join(f"({group})" for group in groups)
    if conflict_keys:
        sql += f" ON CONFLICT ({', '.join(map(quote, conflict_keys))}) DO NOTHING"
    if returning:
        sql += f" RETURNING {', '.join(map(quote, returning))}"
    binds = [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    return DriverInsert(
        sql=sql,
        row_of=tuple(n for n in range(rows) for _ in columns),
        columns=tuple(columns) * rows,
        binds=tuple(binds) * rows,
    )


@dataclass(frozen=True, slots=True)
class InsertShape:
    """What an INSERT of some rows into a table looks like, whatever their number."""

    table: Table
    columns: tuple[str, ...]
    conflict_keys: tuple[str, ...] = ()
    returning: tuple[str, ...] = ()

    def compiled(self, dialect: Dialect, rows: int) -> DriverInsert:
        return _compiled(self, dialect, rows)


# A server has one dialect and meets a handful of row counts; the bound keeps pushes of
# unusual sizes (and tests' many engines) from growing it.
@functools.lru_cache(maxsize=64)
def _compiled(shape: InsertShape, dialect: Dialect, rows: int) -> DriverInsert:
    return compile_insert(
        dialect, shape.table, shape.columns, rows, shape.conflict_keys, shape.returning
    )


class DriverWriter:
    """Executes InsertShapes on one DBAPI connection, inside a transaction begun elsewhere."""

    def __init__(self, dbapi_connection: Any, dialect: Dialect) -> None:
        if dialect.name == "postgresql":  # `$n` parameters, sent as written
            self._cursor = dialect.loaded_dbapi.RawCursor(dbapi_connection)
        else:
            self._cursor = dbapi_connection.cursor()
        self._dialect = dialect

    def insert(self, shape: InsertShape, rows: Sequence[Row]) -> list[tuple[Any, ...]]:
        """Insert `rows`; the RETURNING rows of those inserted (none for conflicts skipped)."""
        returned: list[tuple[Any, ...]] = []
        for start in range(0, len(rows), MAX_ROWS):
            part = rows[start : start + MAX_ROWS]
            compiled = shape.compiled(self._dialect, len(part))
            self._cursor.execute(compiled.sql, compiled.parameters(part))
            if shape.returning:
                returned.extend(self._cursor.fetchall())
        return returned

    def insert_one(self, shape: InsertShape, row: Row) -> tuple[Any, ...] | None:
        """Insert one row; its RETURNING row, or None when a conflict skipped it."""
        found = self.insert(shape, [row])
        return found[0] if found else None
