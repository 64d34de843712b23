"""Exports that verify offline: the log's leaf bytes and signed checkpoints, in plain files.

DIR/manifest.json     format, origin, tree size, root, sha256 of every other file
DIR/entries.jsonl     one line per leaf, in leaf order: leaf_index, table, id, leaf (base64);
                      for an entry retention purged, leaf is null and purged_leaf_hash holds
                      the logged leaf hash (the row itself is in an archive)
DIR/checkpoints.jsonl one line per signed checkpoint: tree_size, note
DIR/public-key.txt    the log's verifier key, for reference only: verify with a copy you trust

The offline check vouches only for entries a valid signed checkpoint covers (invariant 10)
and reads its files as hostile input (labledger.safe_files); exports and archives share it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from labledger.core.errors import ExportRefused, FileRefused, UnreadableRows
from labledger.core.leaves import parse_leaf
from labledger.core.merkle import leaf_hash
from labledger.core.note import VerifierKey
from labledger.core.verify import (
    LedgerVerifier,
    Problem,
    SignedCheckpoint,
    VerifyReport,
    open_checkpoints,
)
from labledger.safe_files import (
    create_private,
    filling_new_folder,
    json_lines,
    member,
    read_json,
    reading_line,
    sha256_file,
)
from labledger.storage.leaf_rows import ENTRY_TABLES, TIME_COLUMN, entry_leaves
from labledger.storage.tables import checkpoints, log_entries, tombstones

EXPORT_FORMAT = "labledger-export/v1"
FILES = ("entries.jsonl", "checkpoints.jsonl")


def export_log(
    engine: Engine,
    directory: Path,
    key: VerifierKey,
    progress: Callable[[int], None] = lambda n: None,
) -> dict[str, Any]:
    """Write the log up to its newest checkpoint, leaf bytes recomputed from the rows, into a
    new or empty folder; the files hold personal data (commitments, messages): 0600."""
    with filling_new_folder(directory):
        return _export(engine, directory, key, progress)


def _export(
    engine: Engine, directory: Path, key: VerifierKey, progress: Callable[[int], None]
) -> dict[str, Any]:
    with engine.connect() as conn, conn.begin():
        notes = conn.execute(select(checkpoints).order_by(checkpoints.c.tree_size)).all()
        if not notes:
            raise ExportRefused("nothing to export: no checkpoint has been signed yet")
        size = notes[-1].tree_size
        write_notes(directory, notes)
        with create_private(directory / "entries.jsonl") as out:
            purged = _purged(conn)
            for start in range(0, size, 5000):
                _export_chunk(conn, out, start, min(size, start + 5000), purged)
                progress(min(size, start + 5000) - start)
    with create_private(directory / "public-key.txt") as out:
        out.write(key.encode() + "\n")
    manifest = {
        "format": EXPORT_FORMAT,
        "origin": key.name,
        "tree_size": size,
        "root": "sha256:" + bytes(notes[-1].root_hash).hex(),
        "exported_at": datetime.now(UTC).isoformat(),
        "files": {name: sha256_file(directory / name) for name in FILES},
    }
    with create_private(directory / "manifest.json") as out:
        out.write(json.dumps(manifest, indent=2) + "\n")
    return manifest


def write_notes(directory: Path, notes: Sequence[Any]) -> None:
    """checkpoints.jsonl: one signed checkpoint (tree_size, note) a line."""
    with create_private(directory / "checkpoints.jsonl") as out:
        for n in notes:
            out.write(json.dumps({"tree_size": n.tree_size, "note": n.note}) + "\n")


def read_notes(directory: Path) -> list[tuple[str, str]]:
    """(source, note text) of each signed checkpoint in checkpoints.jsonl."""
    path = directory / "checkpoints.jsonl"
    notes = []
    for number, line in json_lines(path):
        with reading_line(path, number):
            notes.append((f"checkpoint {int(line['tree_size'])}", str(line["note"])))
    return notes


def vouch(report: VerifyReport, signed: list[SignedCheckpoint], first: int = 0) -> None:
    """Invariant 10: only what a valid signed checkpoint covers is vouched for. `first` is
    where the entries start (an archive's first leaf; the tree before it is not theirs)."""
    sizes = [s.checkpoint.size for s in signed if s.checkpoint.size > first]
    if not sizes:
        report.problems.append(
            Problem("unsigned", "no signed checkpoint covers these entries: nothing is vouched for")
        )
        return
    newest = max(sizes)
    if report.tree_size > newest:
        report.problems.append(
            Problem(
                "unsigned_entries",
                f"leaves {newest} to {report.tree_size - 1} lie beyond the newest signed "
                f"checkpoint (of {newest} entries)",
                leaf_index=newest,
                expected=str(newest),
                actual=str(report.tree_size),
            )
        )


def _purged(conn: Any) -> set[tuple[str, int]]:
    """Entries retention purged (their leaf hash stays in the log; storage/tombstones.py)."""
    rows = conn.execute(
        select(tombstones.c.entry_type, tombstones.c.entry_id).where(tombstones.c.what == "row")
    )
    return {(r.entry_type, r.entry_id) for r in rows}


def _export_chunk(conn: Any, out: Any, start: int, end: int, purged: set[tuple[str, int]]) -> None:
    logged = conn.execute(
        select(
            log_entries.c.leaf_index,
            log_entries.c.entry_type,
            log_entries.c.entry_id,
            log_entries.c.leaf_hash,
        )
        .where(log_entries.c.leaf_index >= start, log_entries.c.leaf_index < end)
        .order_by(log_entries.c.leaf_index)
    ).all()
    by_kind: dict[str, list[int]] = {}
    for e in logged:
        by_kind.setdefault(e.entry_type, []).append(e.entry_id)
    leaves = {kind: _leaves(conn, kind, ids) for kind, ids in by_kind.items()}
    for e in logged:
        leaf = leaves[e.entry_type].get(e.entry_id)
        line = {
            "leaf_index": e.leaf_index,
            "table": ENTRY_TABLES[e.entry_type].name,
            "id": e.entry_id,
        }
        # A row gone from the database is exported as missing, for the offline check to report,
        # unless retention purged it: then its logged leaf hash stands in (the row is archived).
        line["leaf"] = base64.b64encode(leaf).decode() if leaf is not None else None
        if leaf is None and (e.entry_type, e.entry_id) in purged:
            line["purged_leaf_hash"] = bytes(e.leaf_hash).hex()
        out.write(json.dumps(line) + "\n")


def _leaves(conn: Any, kind: str, ids: list[int]) -> dict[int, bytes]:
    """The leaf bytes of these rows; an ExportRefused when one holds a value labledger never
    writes and cannot read (only a change behind its back stores one: `verify` names it)."""
    try:
        return entry_leaves(conn, kind, ids)
    except UnreadableRows as exc:
        raise ExportRefused(str(exc)) from exc


def verify_export(
    directory: Path,
    key: VerifierKey,
    witnesses: list[tuple[str, str]] = (),  # type: ignore[assignment]
    progress: Callable[[int], None] = lambda n: None,
) -> VerifyReport:
    """Verify an export with nothing but its files and a trusted public key; FileRefused
    when a file is not what an export holds."""
    report = VerifyReport()
    manifest = read_manifest(directory, report, EXPORT_FORMAT, FILES)
    signed = open_checkpoints([*read_notes(directory), *witnesses], key, report)
    verifier = LedgerVerifier(signed, report)
    path = directory / "entries.jsonl"
    for number, line in json_lines(path):
        with reading_line(path, number):
            _feed(verifier, report, line)
        if number % 5000 == 0:
            progress(5000)
    verifier.finish()
    vouch(report, signed)
    if manifest.get("tree_size") != report.tree_size:
        report.problems.append(
            Problem(
                "manifest",
                f"manifest says {manifest.get('tree_size')} entries, found {report.tree_size}",
            )
        )
    elif manifest.get("root") != "sha256:" + report.root.hex():
        report.problems.append(Problem("manifest", "the manifest's root is not the tree's"))
    return report


def _feed(verifier: LedgerVerifier, report: VerifyReport, line: dict[str, Any]) -> None:
    index, table, entry_id = _int(line["leaf_index"]), str(line["table"]), _int(line["id"])
    data = base64.b64decode(line["leaf"], validate=True) if line.get("leaf") else None
    moment = None
    if data is not None:
        kind, content = parse_leaf(data)
        column = TIME_COLUMN.get(kind)
        moment = datetime.fromisoformat(content[column]) if column and content.get(column) else None
        check_label(report, index, table, entry_id, kind, content.get("id"))
    row_hash = leaf_hash(data) if data is not None else None
    if row_hash is None and line.get("purged_leaf_hash"):
        row_hash = bytes.fromhex(line["purged_leaf_hash"])  # still bound by every signed root
    verifier.add(index, table, entry_id, None, row_hash, moment)


def check_label(
    report: VerifyReport, index: int, table: str, entry_id: int, kind: str, leaf_id: Any
) -> None:
    """A line's table and id are read beside its leaf, so they must be the leaf's own."""
    if kind not in ENTRY_TABLES or (ENTRY_TABLES[kind].name, leaf_id) != (table, entry_id):
        report.problems.append(
            Problem(
                "entry_label",
                f"leaf {index} is labelled {table} {entry_id} but is {kind} {leaf_id}",
                leaf_index=index,
                table=table,
                entry_id=entry_id,
            )
        )


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"{value!r} is not an integer")
    return value


def read_manifest(
    directory: Path, report: VerifyReport, expected_format: str, names: tuple[str, ...]
) -> dict[str, Any]:
    """An export's or archive's manifest; each of its files (only `names`: no other path is
    opened) that does not match it is a problem."""
    manifest = read_json(directory / "manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != expected_format:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise FileRefused(f"{directory}: format {found!r}; {expected_format} expected")
    files = manifest.get("files", {})
    if not isinstance(files, dict):
        raise FileRefused(f"{directory}/manifest.json: files is not an object")
    for name, expected in files.items():
        path = member(directory, name, names)
        actual = sha256_file(path) if path.exists() or path.is_symlink() else "missing"
        if actual != expected:
            report.problems.append(
                Problem(
                    "manifest",
                    f"{name} does not match the manifest",
                    expected=str(expected),
                    actual=actual,
                )
            )
    return manifest
