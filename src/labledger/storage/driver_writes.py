"""INSERT statements compiled once by SQLAlchemy and executed on the DBAPI cursor.

Each webhook runs half a dozen INSERTs. Through `Connection.execute` every one of them paid
about 67 µs of SQLAlchemy's own work (an execution context, parameter processing, a result
object) on top of the driver's; here a statement is compiled once per dialect and row count,
and a row's values go through the same bind processors of the column types SQLAlchemy would
apply (UtcDateTime, JSON, Boolean...), so the rows stored are the same, byte for byte (a
contract test compares them with rows written through SQLAlchemy).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, Table, bindparam
from sqlalchemy.dialects import postgresql, sqlite

Row = Mapping[str, Any]

# Rows a multi-row INSERT carries at most: SQLite binds at most 32,766 values a statement, and
# an attempt has 21 columns. Longer lists go in several statements.
MAX_ROWS = 256


@dataclass(frozen=True, slots=True)
class DriverInsert:
    """One compiled INSERT: its SQL, and where each parameter comes from."""

    sql: str
    slots: tuple[tuple[int, str], ...]  # (row number, column) of each parameter, in order
    binds: tuple[Callable[[Any], Any] | None, ...]  # the column type's bind processor
    names: tuple[str, ...] | None  # parameter names, for drivers with named parameters

    def parameters(self, rows: Sequence[Row]) -> Sequence[Any] | dict[str, Any]:
        values = [
            rows[n][column] if bind is None else bind(rows[n][column])
            for (n, column), bind in zip(self.slots, self.binds, strict=True)
        ]
        return values if self.names is None else dict(zip(self.names, values, strict=True))


def compile_insert(
    dialect: Dialect,
    table: Table,
    columns: Sequence[str],
    rows: int = 1,
    conflict_keys: Sequence[str] = (),
    returning: Sequence[str] = (),
) -> DriverInsert:
    """INSERT INTO table (columns) VALUES (...) x rows [ON CONFLICT DO NOTHING] [RETURNING]."""
    insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
    values = [
        {name: bindparam(f"p{n}_{name}", type_=table.c[name].type) for name in columns}
        for n in range(rows)
    ]
    stmt: Any = insert(table).values(values)
    if conflict_keys:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict_keys))
    if returning:
        stmt = stmt.returning(*(table.c[name] for name in returning))
    compiled = stmt.compile(dialect=dialect)
    order = compiled.positiontup if compiled.positional else list(compiled.binds)
    assert order is not None
    by_name = {f"p{n}_{name}": (n, name) for n in range(rows) for name in columns}
    return DriverInsert(
        sql=str(compiled),
        slots=tuple(by_name[key] for key in order),
        binds=tuple(
            compiled.binds[key].type.dialect_impl(dialect).bind_processor(dialect) for key in order
        ),
        names=None if compiled.positional else tuple(order),
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
