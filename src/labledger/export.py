"""Exports that verify offline: the log's leaf bytes and signed checkpoints, in plain files.

DIR/manifest.json     format, origin, tree size, root, sha256 of every other file
DIR/entries.jsonl     one line per leaf, in leaf order: leaf_index, table, id, leaf (base64);
                      for an entry retention purged, leaf is null and purged_leaf_hash holds
                      the logged leaf hash (the row itself is in an archive)
DIR/checkpoints.jsonl one line per signed checkpoint: tree_size, note
DIR/public-key.txt    the log's verifier key, for reference only: verify with a copy you trust
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from labledger.core.errors import LedgerError
from labledger.core.leaves import parse_leaf
from labledger.core.merkle import leaf_hash
from labledger.core.note import VerifierKey
from labledger.core.verify import LedgerVerifier, Problem, VerifyReport, open_checkpoints
from labledger.storage.leaf_rows import (
    ENTRY_TABLES,
    TIME_COLUMN,
    UnreadableRows,
    entry_leaves,
)
from labledger.storage.tables import checkpoints, log_entries, tombstones

EXPORT_FORMAT = "labledger-export/v1"
FILES = ("entries.jsonl", "checkpoints.jsonl")


class ExportError(LedgerError):
    pass


def export_log(
    engine: Engine,
    directory: Path,
    key: VerifierKey,
    progress: Callable[[int], None] = lambda n: None,
) -> dict[str, Any]:
    """Write the log up to its newest checkpoint, leaf bytes recomputed from the rows."""
    directory.mkdir(parents=True, exist_ok=True)
    with engine.connect() as conn, conn.begin():
        notes = conn.execute(select(checkpoints).order_by(checkpoints.c.tree_size)).all()
        if not notes:
            raise ExportError("nothing to export: no checkpoint has been signed yet")
        size = notes[-1].tree_size
        with (directory / "checkpoints.jsonl").open("w", encoding="utf-8") as out:
            for n in notes:
                out.write(json.dumps({"tree_size": n.tree_size, "note": n.note}) + "\n")
        with (directory / "entries.jsonl").open("w", encoding="utf-8") as out:
            purged = _purged(conn)
            for start in range(0, size, 5000):
                _export_chunk(conn, out, start, min(size, start + 5000), purged)
                progress(min(size, start + 5000) - start)
    (directory / "public-key.txt").write_text(key.encode() + "\n", encoding="utf-8")
    manifest = {
        "format": EXPORT_FORMAT,
        "origin": key.name,
        "tree_size": size,
        "root": "sha256:" + bytes(notes[-1].root_hash).hex(),
        "exported_at": datetime.now(UTC).isoformat(),
        "files": {name: sha256_file(directory / name) for name in FILES},
    }
    (directory / "manifest.json").write_text(
        json.dumps(manifest, indent=2) + "\n", encoding="utf-8"
    )
    return manifest


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
    """The leaf bytes of these rows; an ExportError when one holds a value labledger never
    writes and cannot read (only a change behind its back stores one: `verify` names it)."""
    try:
        return entry_leaves(conn, kind, ids)
    except UnreadableRows as exc:
        raise ExportError(str(exc)) from exc


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_export(
    directory: Path,
    key: VerifierKey,
    witnesses: list[tuple[str, str]] = (),  # type: ignore[assignment]
    progress: Callable[[int], None] = lambda n: None,
) -> VerifyReport:
    """Verify an export with nothing but its files and a trusted public key."""
    report = VerifyReport()
    manifest = read_manifest(directory, report)
    lines = (directory / "checkpoints.jsonl").read_text(encoding="utf-8").splitlines()
    notes = [(f"checkpoint {json.loads(x)['tree_size']}", json.loads(x)["note"]) for x in lines]
    verifier = LedgerVerifier(open_checkpoints([*notes, *witnesses], key, report), report)
    with (directory / "entries.jsonl").open(encoding="utf-8") as entries:
        for n, text in enumerate(entries, start=1):
            _feed(verifier, json.loads(text))
            if n % 5000 == 0:
                progress(5000)
    verifier.finish()
    if manifest and manifest.get("tree_size") != report.tree_size:
        report.problems.append(
            Problem(
                "manifest",
                f"manifest says {manifest.get('tree_size')} entries, found {report.tree_size}",
            )
        )
    return report


def _feed(verifier: LedgerVerifier, line: dict[str, Any]) -> None:
    data = base64.b64decode(line["leaf"]) if line.get("leaf") else None
    moment = None
    if data is not None:
        kind, content = parse_leaf(data)
        column = TIME_COLUMN.get(kind)
        moment = datetime.fromisoformat(content[column]) if column and content.get(column) else None
    row_hash = leaf_hash(data) if data is not None else None
    if row_hash is None and line.get("purged_leaf_hash"):
        row_hash = bytes.fromhex(line["purged_leaf_hash"])  # still bound by every signed root
    verifier.add(line["leaf_index"], line["table"], line["id"], None, row_hash, moment)


def read_manifest(
    directory: Path, report: VerifyReport, expected_format: str = EXPORT_FORMAT
) -> dict[str, Any]:
    """An export's or archive's manifest; each file that does not match it is a problem."""
    path = directory / "manifest.json"
    if not path.exists():
        raise ExportError(f"{directory} has no manifest.json: not a labledger export or archive")
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != expected_format:
        raise ExportError(f"unknown format {manifest.get('format')!r}; {expected_format} expected")
    for name, expected in manifest.get("files", {}).items():
        actual = sha256_file(directory / name) if (directory / name).exists() else "missing"
        if actual != expected:
            report.problems.append(
                Problem(
                    "manifest",
                    f"{name} does not match the manifest",
                    expected=expected,
                    actual=actual,
                )
            )
    return manifest
