"""Ledger rows column by column, for `verify`: no row mappings, and stored text kept as text.

`leaf_rows` hands back rows exactly as a SQLAlchemy select would; here the same rows come as
columns for `leaf_bytes_columns`, with the conversions done a column at a time and skipped
where the stored form already is the leaf's: a JSON column is read as its stored text and
canonicalized once per distinct text (not decoded to Python values and encoded again), and a
time becomes the leaf's time text: on SQLite by string replacements on the text SQLAlchemy
stores (no datetime built to be formatted again), on PostgreSQL from the 8 bytes it sends for a
time (`timestamptz_send`, no text formatted by the server), converted once per distinct value
(a push's attempts share their times). Any
column holding something else takes the dialect's own result processor, as `leaf_rows` does,
so the leaves are the same either way (tests/integration prove it).
"""

from __future__ import annotations

import functools
import itertools
import json
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring
from typing import Any

from sqlalchemy import JSON, Boolean, Dialect

from labledger.core.leaf_batches import Encoded, json_texts, plain_text, stored_json_texts
from labledger.core.leaves import value_text
from labledger.storage.leaf_rows import (
    ENTRY_TABLES,
    ERASABLE,
    POSTGRES_TIME,
    TIME_COLUMN,
    postgres_time,
)
from labledger.storage.tables import UtcDateTime, push_commits, tombstones

Fetch = Callable[[str, Sequence[Any]], Sequence[Sequence[Any]]]  # SQL, parameters -> rows
Decode = Callable[[Sequence[Any]], Sequence[Any]]
# SQLAlchemy's SQLite DATETIME text; "0" stands for any ASCII digit
SQLITE_TIME_SHAPE = b"0000-00-00 00:00:00.000000\n"
_ANY_DIGIT = bytes.maketrans(b"123456789", b"000000000")
_BOOL_TEXT = {0: "false", 1: "true"}  # True and False hash as 1 and 0
_COMMIT_HEAD = {True: "\x1e", False: ","}
_BOOLS = {0: False, 1: True}


@dataclass(frozen=True, slots=True)
class KindColumns:
    """Rows of one kind in id order: their ids, columns for `leaf_bytes_columns`, own times."""

    ids: Sequence[int]
    columns: dict[str, Sequence[Any]]
    moments: Sequence[datetime | None]


def all_of_shape(joined: str, shape: bytes, count: int) -> bool:
    """Whether `joined` is `count` texts, each `shape` with any ASCII digit where it has "0",
    joined by newlines (shape ends with one), the first digit of each (a year's) not "0"
    (strftime pads no year below 1000)."""
    return (
        joined.isascii()
        and joined.encode().translate(_ANY_DIGIT) + b"\n" == shape * count
        and "0" not in joined[:: len(shape)]
    )


def _processed(convert: Callable[[Any], Any] | None) -> Decode:
    return (lambda values: values) if convert is None else (lambda v: list(map(convert, v)))


def _sqlite_times(convert: Callable[[Any], Any]) -> Decode:
    def decode(values: Sequence[Any]) -> Sequence[Any]:
        if set(map(type, values)) == {str}:
            joined = "\n".join(values)
            if all_of_shape(joined, SQLITE_TIME_SHAPE, len(values)):
                return Encoded(
                    ('"' + joined.replace(" ", "T").replace("\n", 'Z"\n"') + 'Z"').split("\n")
                )
        return list(map(convert, values))

    return decode


def _postgres_times(values: Sequence[Any]) -> Encoded:
    """The leaf's JSON text of each time PostgreSQL sent, converted once per distinct value."""
    texts = {sent: value_text(postgres_time(sent)) for sent in dict.fromkeys(values)}
    return Encoded(map(texts.__getitem__, values))


def _postgres_moments(values: Sequence[Any]) -> Sequence[datetime | None]:
    """The own time of each row from the times PostgreSQL sent (None: no time, or none a
    datetime holds, which its leaf then does not match)."""
    moments = {sent: postgres_time(sent) for sent in dict.fromkeys(values)}
    return [m if type(m) is datetime else None for m in map(moments.__getitem__, values)]


def _sqlite_bools(convert: Callable[[Any], Any]) -> Decode:
    def decode(values: Sequence[Any]) -> Sequence[Any]:
        try:
            return list(map(_BOOLS.__getitem__, values))
        except (KeyError, TypeError):
            return list(map(convert, values))

    return decode


def _decoder(column: Any, dialect: Dialect, as_stored: bool = False) -> Decode:
    convert = column.type.dialect_impl(dialect).result_processor(dialect, None)
    sqlite = dialect.name == "sqlite"
    if isinstance(column.type, JSON):  # read as its stored text (CAST on PostgreSQL)
        texts = stored_json_texts if as_stored else json_texts
        return functools.partial(texts, decode=convert or json.loads)
    if isinstance(column.type, UtcDateTime):  # read with to_char on PostgreSQL
        return _sqlite_times(convert) if sqlite else _postgres_times
    if isinstance(column.type, Boolean) and convert is not None:
        return _sqlite_bools(convert)
    return _processed(convert)


def _moments(decoded: Sequence[Any]) -> Sequence[datetime | None]:
    if type(decoded) is Encoded:  # all of them "YYYY-MM-DDTHH:MM:SS.ffffffZ"
        return list(map(datetime.fromisoformat, "\n".join(decoded).replace('"', "").split("\n")))
    return [v if type(v) is datetime else None for v in decoded]


@dataclass(frozen=True, slots=True)
class KindPlan:
    """How the rows of one kind are read: the query, and a decoder for each column."""

    kind: str
    columns: str  # the select list
    source: str
    names: tuple[str, ...]
    decoders: tuple[Decode, ...]
    stored_decoders: tuple[Decode, ...]  # JSON columns taken as stored (stored_json_texts)
    has_json: bool
    time_at: int | None
    placeholder: str
    array: bool  # PostgreSQL: a list of ids goes as one array parameter
    commit_flag: Callable[[Any], Any] | None  # the dialect's reading of is_distinct

    def fetch(
        self,
        fetch: Fetch,
        ids: Sequence[int] | None,
        bounds: tuple[int, int],
        json_as_stored: bool = False,
    ) -> KindColumns:
        """Rows with `bounds[0] <= id <= bounds[1]`, or only those in `ids` when given; with
        `json_as_stored`, JSON columns as `stored_json_texts` reads them."""
        where, params = self._where("id", ids, bounds)
        table = ENTRY_TABLES[self.kind].name
        sql = f"SELECT {self.columns} FROM {self.source} WHERE {table}.{where} ORDER BY {table}.id"
        rows = fetch(sql, params)
        raw: list[Sequence[Any]] = list(zip(*rows, strict=True)) or [()] * len(self.names)
        decoders = self.stored_decoders if json_as_stored else self.decoders
        decoded = [decode(values) for decode, values in zip(decoders, raw, strict=True)]
        columns = dict(zip(self.names, decoded, strict=True))
        if self.kind == "push":
            columns["commits"] = self._commits(fetch, raw[0], ids, bounds)
        if self.time_at is None:
            moments: Sequence[datetime | None] = [None] * len(rows)
        elif self.array:  # PostgreSQL: from the times as sent
            moments = _postgres_moments(raw[self.time_at])
        else:
            moments = _moments(decoded[self.time_at])
        return KindColumns(raw[0], columns, moments)

    def _where(
        self, column: str, ids: Sequence[int] | None, bounds: tuple[int, int]
    ) -> tuple[str, Sequence[Any]]:
        p = self.placeholder
        if ids is None:
            return f"{column} BETWEEN {p} AND {p}", bounds
        if self.array:
            return f"{column} = ANY({p})", [list(ids)]
        return f"{column} IN ({', '.join([p] * len(ids))})", ids

    def _commits(
        self,
        fetch: Fetch,
        push_ids: Sequence[int],
        ids: Sequence[int] | None,
        bounds: tuple[int, int],
    ) -> Sequence[Any]:
        where, params = self._where("push_id", ids, bounds)
        carried = fetch(
            f"SELECT push_id, commit_sha, is_distinct FROM push_commits WHERE {where} "
            "ORDER BY push_id, position",
            params,
        )
        try:
            return commit_texts(push_ids, carried)
        except (KeyError, TypeError):  # anything but text and booleans: the generic path
            return _commit_lists(push_ids, carried, self.commit_flag)


def commit_texts(push_ids: Sequence[int], carried: Sequence[Sequence[Any]]) -> Encoded:
    """Each push's `commits` as canonical JSON text, `[["sha",true],...]`, from its
    (push_id, commit_sha, is_distinct) rows in push and position order."""
    texts: dict[int, str] = dict.fromkeys(push_ids, "[]")
    if not carried:
        return Encoded(map(texts.__getitem__, push_ids))
    owners, shas, distinct = zip(*carried, strict=True)
    flags = map(_BOOL_TEXT.__getitem__, distinct)
    if not plain_text("".join(shas)):
        shas = tuple(s[1:-1] for s in map(encode_basestring, shas))
    # A commit opens with \x1e where its push's list begins, else with ","; one split then
    # cuts the lists apart (no sha holds a raw \x1e: JSON escapes it).
    starts = list(map(operator.ne, owners, (None, *owners)))
    heads = map(_COMMIT_HEAD.__getitem__, starts)
    joined = "".join(map('%s["%s",%s]'.__mod__, zip(heads, shas, flags, strict=True)))
    lists = map("[%s]".__mod__, joined.split("\x1e")[1:])
    texts.update(zip(itertools.compress(owners, starts), lists, strict=True))
    return Encoded(map(texts.__getitem__, push_ids))


def _commit_lists(
    push_ids: Sequence[int], carried: Sequence[Sequence[Any]], convert: Callable[[Any], Any] | None
) -> list[list[Any]]:
    """`commits` as `leaf_rows` builds them: lists of [sha, is_distinct] as the dialect reads."""
    lists: dict[int, list[Any]] = {i: [] for i in push_ids}
    for owner, sha, distinct in carried:
        if owner in lists:
            lists[owner].append([sha, distinct if convert is None else convert(distinct)])
    return list(lists.values())


_PLANS: dict[tuple[type[Dialect], str], KindPlan] = {}


def kind_plan(dialect: Dialect, kind: str) -> KindPlan:
    """The query and column decoders of one kind, built once per dialect class."""
    key = (type(dialect), kind)
    if key not in _PLANS:
        _PLANS[key] = _build_plan(dialect, kind)
    return _PLANS[key]


def _build_plan(dialect: Dialect, kind: str) -> KindPlan:
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
    postgres = dialect.name == "postgresql"
    selected = [f"{c.table.name}.{c.name}" for c in columns]
    if postgres:
        for i, c in enumerate(columns):
            if isinstance(c.type, JSON):
                selected[i] = f"CAST({selected[i]} AS TEXT)"
            elif isinstance(c.type, UtcDateTime):
                selected[i] = POSTGRES_TIME.format(selected[i])
    names = tuple(c.name for c in columns)
    time_column = TIME_COLUMN.get(kind)
    commit_flag = push_commits.c.is_distinct.type.dialect_impl(dialect)
    return KindPlan(
        kind=kind,
        columns=", ".join(selected),
        source=source,
        names=names,
        decoders=tuple(_decoder(c, dialect) for c in columns),
        stored_decoders=tuple(_decoder(c, dialect, as_stored=True) for c in columns),
        has_json=any(isinstance(c.type, JSON) for c in columns),
        time_at=names.index(time_column) if time_column else None,
        placeholder="?" if dialect.paramstyle == "qmark" else "%s",
        array=postgres,
        commit_flag=commit_flag.result_processor(dialect, None),
    )


def driver_fetch(raw: Any) -> Fetch:
    """Rows as plain tuples from a DBAPI connection (sqlite3 and psycopg both `execute`).
    psycopg (a connection with a `pgconn`) is asked for PostgreSQL's binary format: integers
    and bytea arrive without digits or hex to parse (1-4 % less of verify's own CPU), and every
    column read here comes back as the same Python value (times are read as text)."""
    options = {"binary": True} if hasattr(raw, "pgconn") else {}

    def fetch(sql: str, params: Sequence[Any]) -> Sequence[Sequence[Any]]:
        rows: Sequence[Sequence[Any]] = raw.execute(sql, params, **options).fetchall()
        return rows

    return fetch
