"""`labledger verify` against the database: recompute every leaf from the stored rows."""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, select

from labledger.core.leaf_batches import leaf_bytes_many
from labledger.core.merkle import leaf_hash
from labledger.core.note import VerifierKey
from labledger.core.verify import (
    DEFAULT_BACKDATE_SLACK,
    LedgerVerifier,
    Problem,
    VerifyReport,
    open_checkpoints,
)
from labledger.storage.leaf_rows import BATCH, ENTRY_TABLES, entry_row_batches
from labledger.storage.merkle_log import TIME_COLUMN
from labledger.storage.sql_store import translate_db_errors
from labledger.storage.tables import checkpoints, deliveries, log_queue
from labledger.storage.tombstones import vouched_removals

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
) -> VerifyReport:
    """Rebuild the tree from the rows as they are now and check every signed checkpoint."""
    report = VerifyReport()
    with translate_db_errors(), engine.connect() as conn, conn.begin():
        notes = [(f"checkpoint {r.tree_size}", r.note) for r in conn.execute(select(checkpoints))]
        signed = open_checkpoints([*notes, *witnesses], key, report)
        removed = vouched_removals(conn, report)
        recomputed = _recompute(conn, progress)
        if check_bodies:
            _check_bodies(conn, report, removed.bodies)
        verifier = LedgerVerifier(signed, report, backdate_slack)
        for n, (index, kind, entry_id, logged) in enumerate(_log_entries(conn), start=1):
            row_hash, moment = recomputed.get(kind, {}).pop(entry_id, _GONE)
            if row_hash is None and (kind, entry_id) in removed.rows:
                row_hash = bytes(logged)  # purged on purpose: its leaf hash stands for it
            table = TABLE_OF.get(kind, kind)
            verifier.add(index, table, entry_id, bytes(logged), row_hash, moment)
            if n % BATCH == 0:
                progress(BATCH)
        queued = {(q.entry_type, q.entry_id) for q in conn.execute(select(log_queue))}
    verifier.finish()
    _report_unlogged(report, recomputed, queued)
    return report


def _recompute(conn: Any, progress: Progress) -> Recomputed:
    """Every row's leaf hash and own time, by kind and id."""
    found: Recomputed = {}
    for kind in ENTRY_TABLES:
        time_column = TIME_COLUMN.get(kind)
        hashes: dict[int, tuple[bytes, datetime | None]] = {}
        found[kind] = hashes
        for rows in entry_row_batches(conn, kind):
            ids = [row["id"] for row in rows]
            moments = [row[time_column] for row in rows] if time_column else [None] * len(rows)
            leaves = map(leaf_hash, leaf_bytes_many(kind, rows))
            hashes.update(zip(ids, zip(leaves, moments, strict=True), strict=True))
            progress(len(rows))
    return found


def _log_entries(conn: Any) -> Iterator[Any]:
    """(leaf_index, entry_type, entry_id, leaf_hash) in leaf order, in driver SQL, streamed."""
    rows = conn.execution_options(yield_per=BATCH).exec_driver_sql(
        "SELECT leaf_index, entry_type, entry_id, leaf_hash FROM log_entries ORDER BY leaf_index"
    )
    for batch in rows.partitions():
        yield from batch


def _check_bodies(conn: Any, report: VerifyReport, dropped: set[int]) -> None:
    rows = conn.execution_options(yield_per=1000).execute(
        select(deliveries.c.id, deliveries.c.body_sha256, deliveries.c.body_zlib)
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
    report: VerifyReport, leftover: Recomputed, queued: set[tuple[str, int]]
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
