"""Archives: a leaf range of the ledger, with its rows, that verifies offline (issue 7).

An archive holds the leaves [first_leaf, end_leaf), where end_leaf is the size of a signed
checkpoint and first_leaf is where the previous archive ended, so archives follow each other
without gaps or overlaps. It stands on its own:

DIR/manifest.json       format, origin, leaf range, counts per table, the compact range of
                        the tree at first_leaf, the covering checkpoint, sha256 of each file
DIR/entries.jsonl.gz    one line per leaf, in leaf order: leaf_index, table, id, the full
                        stored row (personal fields included, unless erased) and, for a
                        delivery, its raw body while it is still kept
DIR/checkpoints.jsonl   the signed checkpoints of sizes first_leaf..end_leaf
DIR/public-key.txt      the log's verifier key, for reference only

`labledger verify --export DIR --public-key KEY` (archive_check.py) recomputes every leaf
from its row, starts the tree from the compact range (whose root must match the signed
checkpoint at first_leaf), and checks every checkpoint in the range. A stored personal
commitment stands in for the personal fields only where erasure blanked them.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select

from labledger.core.errors import RetentionRefused
from labledger.core.leaves import entry_leaf_hash
from labledger.core.merkle import CompactRange
from labledger.core.note import VerifierKey
from labledger.safe_files import create_private, filling_new_folder, sha256_file
from labledger.services.archive_check import ARCHIVE_FORMAT as ARCHIVE_FORMAT
from labledger.services.archive_check import FILES as FILES
from labledger.services.archive_check import is_archive as is_archive
from labledger.services.archive_check import verify_archive as verify_archive
from labledger.services.export import write_notes
from labledger.storage.leaf_rows import ENTRY_TABLES, entry_rows
from labledger.storage.merkle_log import checkpoint_from_row
from labledger.storage.retention import record_archive
from labledger.storage.retention_plan import archived_end
from labledger.storage.sql_store import translate_db_errors
from labledger.storage.tables import checkpoints, deliveries, log_entries

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # as in canonical leaf JSON
CHUNK = 2000
Progress = Callable[[int], None]


def write_archive(
    engine: Engine,
    directory: Path,
    key: VerifierKey,
    *,
    before: datetime,
    actor: str,
    now: datetime,
    progress: Progress = lambda n: None,
) -> dict[str, Any]:
    """Archive the leaves after the last archive, up to the newest checkpoint signed before
    `before`; record it in the ledger (an `archive` audit event) and return its manifest."""
    with filling_new_folder(directory):
        return _write(engine, directory, key, before, actor, now, progress)


def _write(
    engine: Engine,
    directory: Path,
    key: VerifierKey,
    before: datetime,
    actor: str,
    now: datetime,
    progress: Progress,
) -> dict[str, Any]:
    with translate_db_errors(), engine.connect() as conn, conn.begin():
        first = archived_end(conn)
        end_row = conn.execute(
            select(checkpoints)
            .where(checkpoints.c.created_at < before)
            .order_by(checkpoints.c.tree_size.desc())
            .limit(1)
        ).one_or_none()
        if end_row is None or end_row.tree_size <= first:
            raise RetentionRefused(
                f"nothing to archive before {before.isoformat()}: the archives already hold "
                f"leaves [0, {first}) and no later checkpoint was signed before that time"
            )
        end = int(end_row.tree_size)
        notes = conn.execute(
            select(checkpoints)
            .where(checkpoints.c.tree_size >= first, checkpoints.c.tree_size <= end)
            .order_by(checkpoints.c.tree_size)
        ).all()
        start = next((n for n in notes if n.tree_size == first), None)
        if first > 0 and start is None:
            raise RetentionRefused(f"no signed checkpoint of size {first} to start the archive at")
        frontier = checkpoint_from_row(start).frontier if start is not None else CompactRange()
        write_notes(directory, notes)
        counts = _write_entries(conn, directory / "entries.jsonl.gz", first, end, progress)
    with create_private(directory / "public-key.txt") as out:
        out.write(key.encode() + "\n")
    manifest = {
        "format": ARCHIVE_FORMAT,
        "origin": key.name,
        "first_leaf": first,
        "end_leaf": end,
        "start_frontier": [h.hex() for h in frontier.hashes],
        "root": "sha256:" + bytes(end_row.root_hash).hex(),
        "checkpoint": end_row.note,
        "entries": counts,
        "created_at": now.isoformat(),
        "files": {name: sha256_file(directory / name) for name in FILES},
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    with create_private(directory / "manifest.json") as out:
        out.write(text)
    manifest["archive_id"] = record_archive(
        engine,
        first_leaf=first,
        end_leaf=end,
        checkpoint_note=end_row.note,
        manifest_sha256=hashlib.sha256(text.encode("utf-8")).digest(),
        location=str(directory.resolve()),
        counts=counts,
        actor=actor,
        now=now,
    )
    return manifest


def _write_entries(
    conn: Connection, path: Path, first: int, end: int, progress: Progress
) -> dict[str, int]:
    counts: dict[str, int] = {}
    with create_private(path, "wb") as raw, gzip.open(raw, "wt", encoding="utf-8",
                                                      compresslevel=6) as out:  # fmt: skip
        for lo in range(first, end, CHUNK):
            hi = min(end, lo + CHUNK)
            for line in _archive_lines(conn, lo, hi):
                counts[line["table"]] = counts.get(line["table"], 0) + 1
                out.write(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n")
            progress(hi - lo)
    return counts


def _archive_lines(conn: Connection, lo: int, hi: int) -> Iterator[dict[str, Any]]:
    logged = conn.execute(
        select(log_entries)
        .where(log_entries.c.leaf_index >= lo, log_entries.c.leaf_index < hi)
        .order_by(log_entries.c.leaf_index)
    ).all()
    by_kind: dict[str, list[int]] = {}
    for e in logged:
        by_kind.setdefault(e.entry_type, []).append(e.entry_id)
    rows = {kind: entry_rows(conn, kind, ids) for kind, ids in by_kind.items()}
    bodies = _bodies(conn, by_kind.get("delivery", []))
    expected = lo
    for e in logged:
        if e.leaf_index != expected:
            raise RetentionRefused(
                f"leaf {expected} is missing from the log; run `labledger verify`"
            )
        expected += 1
        row = rows[e.entry_type].get(e.entry_id)
        if row is None:
            raise RetentionRefused(
                f"{ENTRY_TABLES[e.entry_type].name} {e.entry_id} (leaf {e.leaf_index}) is gone "
                "from the database; run `labledger verify`"
            )
        if entry_leaf_hash(e.entry_type, row) != bytes(e.leaf_hash):
            raise RetentionRefused(
                f"{ENTRY_TABLES[e.entry_type].name} {e.entry_id} (leaf {e.leaf_index}) does not "
                "match its logged leaf; run `labledger verify` before archiving"
            )
        line: dict[str, Any] = {
            "leaf_index": e.leaf_index,
            "table": ENTRY_TABLES[e.entry_type].name,
            "kind": e.entry_type,
            "id": e.entry_id,
            "row": _plain_row(row),
        }
        if e.entry_type == "delivery":
            line["body"] = bodies.get(e.entry_id)
        yield line
    if expected != hi:
        raise RetentionRefused(f"leaf {expected} is missing from the log; run `labledger verify`")


def _plain_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as JSON values, in the leaf's own text forms (times, bytes as hex)."""
    plain = {}
    for name, value in row.items():
        if isinstance(value, datetime):
            value = value.astimezone(UTC).strftime(TIME_FORMAT)
        elif isinstance(value, bytes | bytearray | memoryview):
            value = bytes(value).hex()
        plain[name] = value
    return plain


def _bodies(conn: Connection, ids: list[int]) -> dict[int, str | None]:
    found: dict[int, str | None] = {}
    for start in range(0, len(ids), 200):
        for r in conn.execute(
            select(deliveries.c.id, deliveries.c.body_zlib).where(
                deliveries.c.id.in_(ids[start : start + 200])
            )
        ):
            raw = bytes(r.body_zlib)
            # Bodies were accepted as JSON, so they are UTF-8; a purged body is empty.
            found[r.id] = zlib.decompress(raw).decode("utf-8", "replace") if raw else None
    return found
