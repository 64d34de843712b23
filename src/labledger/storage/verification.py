"""`labledger verify` against the database: recompute every leaf from the stored rows."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from labledger.core.leaves import entry_leaf_hash
from labledger.core.note import VerifierKey
from labledger.core.verify import (
    DEFAULT_BACKDATE_SLACK,
    LedgerVerifier,
    Problem,
    VerifyReport,
    open_checkpoints,
)
from labledger.storage.merkle_log import ENTRY_TABLES, TIME_COLUMN, all_entry_rows
from labledger.storage.sql_store import translate_db_errors
from labledger.storage.tables import checkpoints, deliveries, log_entries, log_queue

Progress = Callable[[int], None]
TABLE_OF = {kind: table.name for kind, table in ENTRY_TABLES.items()}


def verify_database(
    engine: Engine,
    key: VerifierKey,
    witnesses: list[tuple[str, str]] = (),  # type: ignore[assignment]
    *,
    check_bodies: bool = True,
    backdate_slack: timedelta = DEFAULT_BACKDATE_SLACK,
    progress: Progress = lambda n: None,
) -> VerifyReport:
    """Rebuild the tree from the rows as they are now and check every signed checkpoint."""
    report = VerifyReport()
    with translate_db_errors(), engine.connect() as conn, conn.begin():
        notes = [(f"checkpoint {r.tree_size}", r.note) for r in conn.execute(select(checkpoints))]
        signed = open_checkpoints([*notes, *witnesses], key, report)
        recomputed = _recompute(conn, progress)
        if check_bodies:
            _check_bodies(conn, report)
        verifier = LedgerVerifier(signed, report, backdate_slack)
        rows = conn.execution_options(yield_per=5000).execute(
            select(log_entries).order_by(log_entries.c.leaf_index)
        )
        for n, e in enumerate(rows, start=1):
            row_hash, moment = recomputed.pop((e.entry_type, e.entry_id), (None, None))
            table = TABLE_OF.get(e.entry_type, e.entry_type)
            verifier.add(e.leaf_index, table, e.entry_id, bytes(e.leaf_hash), row_hash, moment)
            if n % 5000 == 0:
                progress(5000)
        queued = {(q.entry_type, q.entry_id) for q in conn.execute(select(log_queue))}
    verifier.finish()
    _report_unlogged(report, recomputed, queued)
    return report


def _recompute(
    conn: Any, progress: Progress
) -> dict[tuple[str, int], tuple[bytes, datetime | None]]:
    found: dict[tuple[str, int], tuple[bytes, datetime | None]] = {}
    for kind in ENTRY_TABLES:
        time_column = TIME_COLUMN.get(kind)
        for n, row in enumerate(all_entry_rows(conn, kind), start=1):
            moment = row[time_column] if time_column else None
            found[(kind, row["id"])] = (entry_leaf_hash(kind, row), moment)
            if n % 5000 == 0:
                progress(5000)
    return found


def _check_bodies(conn: Any, report: VerifyReport) -> None:
    rows = conn.execution_options(yield_per=1000).execute(
        select(deliveries.c.id, deliveries.c.body_sha256, deliveries.c.body_zlib)
    )
    for row in rows:
        actual = hashlib.sha256(zlib.decompress(row.body_zlib)).digest()
        if actual != bytes(row.body_sha256):
            report.problems.append(
                Problem(
                    "body_mismatch",
                    f"raw body of delivery row {row.id} does not match its recorded sha256",
                    table="deliveries",
                    entry_id=row.id,
                    expected=bytes(row.body_sha256).hex(),
                    actual=actual.hex(),
                )
            )


def _report_unlogged(
    report: VerifyReport,
    leftover: dict[tuple[str, int], tuple[bytes, datetime | None]],
    queued: set[tuple[str, int]],
) -> None:
    for kind, entry_id in sorted(leftover):
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
