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

`labledger verify --export DIR --public-key KEY` recomputes every leaf from its row, starts
the tree from the compact range (whose root must match the signed checkpoint at first_leaf),
and checks every checkpoint in the range. A stored personal commitment stands in for the
personal fields only where erasure blanked them; otherwise it is recomputed from them.
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

from labledger.core.leaves import (
    LEAF_FIELDS,
    entry_leaf_hash,
    leaf_bytes,
    personal_commitment,
)
from labledger.core.merkle import CompactRange, leaf_hash
from labledger.core.note import VerifierKey
from labledger.core.retention import RetentionError
from labledger.core.verify import LedgerVerifier, Problem, VerifyReport, open_checkpoints
from labledger.export import check_label, read_manifest, read_notes, vouch, write_notes
from labledger.safe_files import (
    FileRefused,
    create_private,
    filling_new_folder,
    json_lines,
    read_json,
    reading_line,
    sha256_file,
)
from labledger.storage.leaf_rows import ENTRY_TABLES, TIME_COLUMN, entry_rows
from labledger.storage.merkle_log import checkpoint_from_row
from labledger.storage.retention import record_archive
from labledger.storage.retention_plan import archived_end
from labledger.storage.sql_store import translate_db_errors
from labledger.storage.tables import checkpoints, deliveries, log_entries

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # as in canonical leaf JSON
ARCHIVE_FORMAT = "labledger-archive/v1"
FILES = ("entries.jsonl.gz", "checkpoints.jsonl")
CHUNK = 2000
Progress = Callable[[int], None]


def is_archive(directory: Path) -> bool:
    """Whether the folder's manifest says archive; an unreadable one is left to the export
    reader to refuse."""
    try:
        manifest = read_json(directory / "manifest.json")
    except FileRefused:
        return False
    return isinstance(manifest, dict) and manifest.get("format") == ARCHIVE_FORMAT


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
            raise RetentionError(
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
            raise RetentionError(f"no signed checkpoint of size {first} to start the archive at")
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
            raise RetentionError(f"leaf {expected} is missing from the log; run `labledger verify`")
        expected += 1
        row = rows[e.entry_type].get(e.entry_id)
        if row is None:
            raise RetentionError(
                f"{ENTRY_TABLES[e.entry_type].name} {e.entry_id} (leaf {e.leaf_index}) is gone "
                "from the database; run `labledger verify`"
            )
        if entry_leaf_hash(e.entry_type, row) != bytes(e.leaf_hash):
            raise RetentionError(
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
        raise RetentionError(f"leaf {expected} is missing from the log; run `labledger verify`")


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


def leaf_from_archived_row(kind: str, row: dict[str, Any]) -> bytes:
    """The canonical leaf bytes of a row as an archive stores it (times and bytes as text).
    A stored commitment stands in for the personal fields only where they were erased."""
    values = dict(row)
    personal = LEAF_FIELDS[kind][1]
    if personal:
        stored = row.get("personal_sha256")
        values["personal_salt"] = bytes.fromhex(row.get("personal_salt") or "")
        values["personal_sha256"] = bytes.fromhex(stored) if stored and _erased(kind, row) else None
    return leaf_bytes(kind, values)


def _erased(kind: str, row: dict[str, Any]) -> bool:
    """Erasure blanks every personal field and the salt (storage/erasure.py)."""
    blank = (None, "")
    return not row.get("personal_salt") and all(row.get(n) in blank for n in LEAF_FIELDS[kind][1])


def verify_archive(
    directory: Path,
    key: VerifierKey,
    witnesses: list[tuple[str, str]] = (),  # type: ignore[assignment]
    progress: Progress = lambda n: None,
) -> VerifyReport:
    """Verify an archive with nothing but its files and a trusted public key; FileRefused
    when a file is not what an archive holds."""
    report = VerifyReport()
    manifest = read_manifest(directory, report, ARCHIVE_FORMAT, FILES)
    with reading_line(directory / "manifest.json", 1):
        first, end = _int(manifest["first_leaf"]), _int(manifest["end_leaf"])
        start = CompactRange(first, [bytes.fromhex(h) for h in manifest["start_frontier"]])
    signed = open_checkpoints([*read_notes(directory), *witnesses], key, report)
    if first > 0 and not any(s.checkpoint.size == first for s in signed):
        report.problems.append(
            Problem("archive_start", f"no signed checkpoint of size {first} to start from")
        )
    # The start checkpoint is compared with the compact range as soon as the verifier opens.
    verifier = LedgerVerifier(
        [s for s in signed if s.checkpoint.size >= first], report, start=start
    )
    path = directory / "entries.jsonl.gz"
    for number, line in json_lines(path):
        with reading_line(path, number):
            _feed(verifier, report, line)
        if number % 5000 == 0:
            progress(5000)
    verifier.finish()
    vouch(report, signed, first)
    if report.tree_size != end:
        report.problems.append(
            Problem("manifest", f"manifest says leaves up to {end}, found {report.tree_size}")
        )
    return report


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"{value!r} is not an integer")
    return value


def _feed(verifier: LedgerVerifier, report: VerifyReport, line: dict[str, Any]) -> None:
    kind, row, table = str(line["kind"]), dict(line["row"]), str(line["table"])
    column = TIME_COLUMN.get(kind)
    moment = datetime.fromisoformat(row[column]) if column and row.get(column) else None
    row_hash = leaf_hash(leaf_from_archived_row(kind, row))
    index, entry_id = _int(line["leaf_index"]), _int(line["id"])
    where: dict[str, Any] = {"leaf_index": index, "table": table, "entry_id": entry_id}
    verifier.add(index, table, entry_id, None, row_hash, moment)
    check_label(report, index, table, entry_id, kind, row.get("id"))
    if _unbound_personal_fields(kind, row):
        report.problems.append(
            Problem(
                "personal_fields",
                f"the personal fields of {table} {line['id']} are not blank, yet do not hash to "
                "the commitment beside them (rewritten names?)",
                **where,
            )
        )
    body = line.get("body")
    if body is not None:
        actual = hashlib.sha256(body.encode("utf-8")).hexdigest()
        if actual != row.get("body_sha256"):
            report.problems.append(
                Problem(
                    "body_mismatch",
                    f"raw body of {table} {line['id']} does not match its recorded sha256",
                    expected=row.get("body_sha256"),
                    actual=actual,
                    **where,
                )
            )


def _unbound_personal_fields(kind: str, row: dict[str, Any]) -> bool:
    """A commitment beside personal fields that are not blank must be theirs."""
    personal = LEAF_FIELDS[kind][1]
    stored = row.get("personal_sha256")
    if not personal or not stored or _erased(kind, row):
        return False
    salt = bytes.fromhex(row.get("personal_salt") or "")
    return bool(personal_commitment(salt, {n: row[n] for n in personal}).hex() != stored)
