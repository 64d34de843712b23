"""A SELECT of the ingest path compiled once per database and run on the DBAPI connection.

Every webhook reads the sessions of its repository inside its write transaction, and on
SQLite the writers of one process take turns (engine.writer_lock). Through
`Connection.execute` that read cost about 150 µs, ten times the driver's own work: an
execution context, a result object and rows built column by column. Here the statement is
compiled by SQLAlchemy once and kept, and each column of each row still goes through the
result processor of its type that SQLAlchemy would apply (times as UTC, booleans...), so the
values read are the same (a contract test compares them).
"""

from __future__ import annotations

import functools
from collections import namedtuple
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy.sql import Select


@dataclass(frozen=True, slots=True)
class DriverSelect:
    sql: str
    positions: tuple[str, ...] | None  # parameter names in order, for positional drivers
    processors: tuple[Callable[[Any], Any] | None, ...]
    row: Callable[..., Any]  # a named tuple of the selected columns

    def rows(self, raw: Any, params: Mapping[str, Any]) -> list[Any]:
        """The rows of the statement on a DBAPI connection (sqlite3's or psycopg's)."""
        bound: Any = params if self.positions is None else [params[n] for n in self.positions]
        make, processors = self.row, self.processors
        return [
            make(*(v if p is None else p(v) for v, p in zip(values, processors, strict=True)))
            for values in raw.execute(self.sql, bound).fetchall()
        ]


def driver_select(statement: Select[Any], dialect: Dialect) -> DriverSelect:
    return _compiled(statement, dialect)


# Statements are module constants and a server has one dialect; tests make many engines.
@functools.lru_cache(maxsize=16)
def _compiled(statement: Select[Any], dialect: Dialect) -> DriverSelect:
    compiled = statement.compile(dialect=dialect)
    columns = list(statement.selected_columns)
    processors = tuple(
        c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
    )
    names = [str(c.key) for c in columns]
    positional = compiled.positiontup is not None and dialect.paramstyle in ("qmark", "numeric")
    return DriverSelect(
        sql=compiled.string,
        positions=tuple(compiled.positiontup or ()) if positional else None,
        processors=processors,
        row=namedtuple("Row", names),
    )
