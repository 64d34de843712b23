"""Bulk-load a large ledger straight into labledger's tables with set-based SQL.

One INSERT ... SELECT per table over a number series (generate_series on PostgreSQL, a
recursive CTE on SQLite). Each delivery carries five commits of one session; a session's
deliveries are spread over the whole table, as a deadline interleaves them in real life.
As in a real ledger, every attempt has changed files of its own and every row with personal
fields a salt of its own (what `verify` costs depends on both), and JSON is stored as
labledger writes it, in canonical form.

Every row is what labledger would have made of its evidence, so that `verify` re-derives it
as it would a real ledger: each delivery keeps a raw push body of its own (bench/payloads.py,
built in Python, the only rows not written by set-based SQL) that says exactly what its push
and attempts hold, each push has the `delivery.recorded` audit event the API writes with it
and each session its `session.created` event. Every row is dated at the push time, as the
checkpoints are (bench/tamper.py), so that none looks back-dated.
The same formulas in Python (below) name rows the read benchmark can ask for.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text

from bench.databases import DUE_AT, OPENS_AT, Database
from bench.payloads import PUSHED_AT, push_body
from labledger.storage.engine import WRITE_OPTION, make_engine
from labledger.storage.tables import deliveries

PER_DELIVERY = 5
PER_SESSION = 100
REPO_BASE = 10_000_000
BODY_ROWS = 2_000  # deliveries inserted a statement at a time
# What bench/payloads.py writes after "Implement step N" in every commit message
MESSAGE_TAIL = (
    " of the lab\n\nAdds the list operations and their tests; fixes the off-by-one in remove()."
)


@dataclass(frozen=True, slots=True)
class Layout:
    attempts: int

    @property
    def sessions(self) -> int:
        return max(1, self.attempts // PER_SESSION)

    @property
    def deliveries(self) -> int:
        return self.attempts // PER_DELIVERY


def commit_sha(attempt: int) -> str:
    return f"{(attempt * 2654435761) % 2**32:08x}{attempt:032x}"


def delivery_id(delivery: int) -> str:
    return f"00000000-0000-4000-8000-{delivery:012x}"


def _hex(dialect: str, expr: str, width: int) -> str:
    if dialect == "sqlite":
        return f"printf('%0{width}x', {expr})"
    return f"lpad(to_hex({expr}), {width}, '0')"


def _sha(dialect: str, expr: str) -> str:
    return f"{_hex(dialect, f'({expr}) * 2654435761 % 4294967296', 8)} || {_hex(dialect, expr, 32)}"


def _files(dialect: str) -> str:
    """Each attempt's own changed files, as labledger stores them (canonical JSON text)."""
    files = """'{"added":["src/lab/step' || i || '.py"],"modified":["README.md"],"removed":[]}'"""
    return f"CAST({files} AS json)" if dialect == "postgresql" else files


def _salt(dialect: str) -> str:
    """16 bytes of personal salt a row, as labledger draws them for rows with personal fields."""
    return "randomblob(16)" if dialect == "sqlite" else "decode(md5(random()::text), 'hex')"


def _insert(dialect: str, table: str, columns: dict[str, str], count: int) -> str:
    names, values = ", ".join(columns), ", ".join(columns.values())
    if dialect == "sqlite":
        return (
            f"WITH RECURSIVE series(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM series "
            f"WHERE i < {count}) INSERT INTO {table} ({names}) SELECT {values} FROM series"
        )
    series = f"generate_series(1, {count}) AS series(i)"
    return f"INSERT INTO {table} ({names}) SELECT {values} FROM {series}"


def _statements(dialect: str, layout: Layout) -> list[str]:
    """Every table but `deliveries`, whose raw bodies `_insert_deliveries` writes."""
    s, d = layout.sessions, layout.deliveries
    json_of = (lambda t: f"CAST({t} AS json)") if dialect == "postgresql" else (lambda t: t)
    repo_of_delivery = f"{REPO_BASE} + ((i - 1) % {s}) + 1"
    repo_of_attempt = f"{REPO_BASE} + (((i - 1) / {PER_DELIVERY}) % {s}) + 1"
    owner = f"'student' || ({repo_of_delivery})"
    step = f"((i - 1) % {PER_DELIVERY})"
    files = (
        """'{"added":["src/lab/step_' || """
        + step
        + """ || '.py","tests/test_step_' || """
        + step
        + """ || '.py"],"modified":["src/lab/linked_list.py","README.md"],"removed":[]}'"""
    )
    return [
        _insert(dialect, "lab_sessions", {
            "id": "i", "lab_id": "'lab-3'", "subject_id": "'student' || i", "forge": "'github'",
            "repository_id": f"{REPO_BASE} + i", "repository_full_name": "'student' || i || '/lab'",
            "branch_glob": "'*'", "opens_at": ":opens", "due_at": ":due", "created_at": ":pushed",
        }, s),
        _insert(dialect, "pushes", {
            "id": "i", "delivery_pk": "i", "forge": "'github'",
            "repository_id": repo_of_delivery,
            "repository_full_name": f"{owner} || '/lab-' || ({repo_of_delivery})",
            "ref": "'refs/heads/main'",
            "before_sha": _sha(dialect, "i + 7"), "after_sha": _sha(dialect, f"i * {PER_DELIVERY}"),
            "created": "false", "deleted": "false", "forced": "false",
            "pusher_name": f"'student' || ({repo_of_delivery})",
            "pusher_email": f"'student' || ({repo_of_delivery}) || '@example.edu'",
            "sender_login": f"'student' || ({repo_of_delivery})",
            "sender_id": f"({repo_of_delivery}) % 9999991",
            "pushed_at": ":pushed", "commit_count": str(PER_DELIVERY),
            "commit_list_complete": "true", "personal_salt": _salt(dialect),
        }, d),
        _insert(dialect, "push_commits", {
            "push_id": f"(i - 1) / {PER_DELIVERY} + 1", "position": f"(i - 1) % {PER_DELIVERY}",
            "commit_sha": _sha(dialect, "i"), "is_distinct": "true",
        }, layout.attempts),
        _insert(dialect, "attempts", {
            "id": "i", "session_id": f"(((i - 1) / {PER_DELIVERY}) % {s}) + 1",
            "commit_sha": _sha(dialect, "i"), "tree_sha": _sha(dialect, "i + 3"),
            "message": f"'Implement step ' || {step} || :message_tail",
            "author_name": "'Ada Student'",
            "author_email": f"'student' || ({repo_of_attempt}) || '@example.edu'",
            "author_username": f"'student' || ({repo_of_attempt})",
            "committer_name": "'Ada Student'",
            "committer_email": f"'student' || ({repo_of_attempt}) || '@example.edu'",
            "committer_username": f"'student' || ({repo_of_attempt})",
            "claimed_timestamp": "'2025-11-24T16:58:12+01:00'",
            "is_distinct": "true", "branch": "'main'", "changed_files": json_of(files),
            "push_id": f"(i - 1) / {PER_DELIVERY} + 1",
            "delivery_pk": f"(i - 1) / {PER_DELIVERY} + 1",
            "pushed_at": ":pushed", "received_at": ":pushed", "personal_salt": _salt(dialect),
        }, layout.attempts),
        _insert(dialect, "audit_events", {
            "id": "i", "occurred_at": ":pushed", "actor": "'github-hook:4242'",
            "action": "'delivery.recorded'", "target_type": "'delivery'",
            "target_id": f"'00000000-0000-4000-8000-' || {_hex(dialect, 'i', 12)}",
            "details": json_of("""'{"attempts"\\:5,"event":"push","push_id":' || i || '}'"""),
        }, d),
        _insert(dialect, "audit_events", {
            "id": f"{d} + i", "occurred_at": ":pushed", "actor": "'bench'",
            "action": "'session.created'", "target_type": "'session'", "target_id": "'' || i",
            "details": json_of(
                """'{"lab_id":"lab-3","repository_id":' || """ + f"({REPO_BASE} + i) || '}}'"
            ),
        }, s),
    ]  # fmt: skip


def body(layout: Layout, delivery: int) -> bytes:
    """The raw push body of a delivery: the commits its push row and attempts hold."""
    repo = REPO_BASE + (delivery - 1) % layout.sessions + 1
    first = (delivery - 1) * PER_DELIVERY + 1
    attempts = range(first, first + PER_DELIVERY)
    shas = [commit_sha(a) for a in attempts]
    trees = [commit_sha(a + 3) for a in attempts]
    return push_body(repo, shas, before=commit_sha(delivery + 7), trees=trees)


def _insert_deliveries(conn: Connection, layout: Layout, received_at: datetime) -> None:
    for start in range(1, layout.deliveries + 1, BODY_ROWS):
        rows = []
        for d in range(start, min(start + BODY_ROWS, layout.deliveries + 1)):
            raw = body(layout, d)
            rows.append({
                "id": d, "forge": "github", "delivery_id": delivery_id(d), "hook_id": "4242",
                "event": "push", "received_at": received_at,
                "body_sha256": hashlib.sha256(raw).digest(), "body_size": len(raw),
                "body_zlib": zlib.compress(raw, 6),
            })  # fmt: skip
        conn.execute(deliveries.insert(), rows)


def _params(dialect: str) -> dict[str, object]:
    moments = {"opens": OPENS_AT, "due": DUE_AT, "pushed": pushed_at()}
    times: dict[str, object] = dict(moments)
    if dialect == "sqlite":  # the text form SQLAlchemy's SQLite DateTime writes and reads
        times = {k: v.strftime("%Y-%m-%d %H:%M:%S.%f") for k, v in moments.items()}
    return {**times, "message_tail": MESSAGE_TAIL}


def pushed_at() -> datetime:
    return datetime.fromtimestamp(PUSHED_AT, OPENS_AT.tzinfo)


def load(database: Database, attempts: int) -> float:
    """Fill a migrated, empty ledger with `attempts` attempts; returns the seconds it took."""
    started = time.perf_counter()
    engine = make_engine(database.url)
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(**{WRITE_OPTION: True})
            if database.dialect == "sqlite":  # random index keys: keep the B-trees in memory
                conn.exec_driver_sql("PRAGMA cache_size = -1000000")
                conn.commit()
            params = _params(database.dialect)
            with conn.begin():
                _insert_deliveries(conn, Layout(attempts), pushed_at())
                for statement in _statements(database.dialect, Layout(attempts)):
                    conn.execute(text(statement), params)
            if database.dialect == "postgresql":
                _finish_postgres(conn)
    finally:
        engine.dispose()
    return time.perf_counter() - started


def _finish_postgres(conn: Connection) -> None:
    """Move the id sequences past the loaded rows, then VACUUM (ANALYZE): a ledger that grew
    to this size over a term has long been vacuumed by autovacuum (PostgreSQL 13+ vacuums
    insert-only tables too). Without it, the first read of every freshly loaded page sets
    its hint bits and dirties it, a cost of having just bulk-loaded, not of the reads."""
    for table in ("lab_sessions", "deliveries", "pushes", "attempts", "audit_events"):
        conn.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
        )
    conn.commit()
    autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
    autocommit.exec_driver_sql("VACUUM (ANALYZE)")
