"""Checking an archive offline (archive.py writes them): every leaf recomputed from its
archived row, the tree started from the compact range, every checkpoint in the range checked,
and the same rules as for an export (export.py): only what a signed checkpoint covers is
vouched for, and the files are read as hostile input (safe_files.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from labledger.core.errors import FileRefused
from labledger.core.leaves import LEAF_FIELDS, leaf_bytes, personal_commitment
from labledger.core.merkle import CompactRange, leaf_hash
from labledger.core.note import VerifierKey
from labledger.core.verify import LedgerVerifier, Problem, VerifyReport, open_checkpoints
from labledger.safe_files import json_lines, read_json, reading_line
from labledger.services.export import check_label, read_manifest, read_notes, vouch
from labledger.storage.leaf_rows import TIME_COLUMN

ARCHIVE_FORMAT = "labledger-archive/v1"
FILES = ("entries.jsonl.gz", "checkpoints.jsonl")
Progress = Callable[[int], None]


def is_archive(directory: Path) -> bool:
    """Whether the folder's manifest says archive; an unreadable one is left to the export
    reader to refuse."""
    try:
        manifest = read_json(directory / "manifest.json")
    except FileRefused:
        return False
    return isinstance(manifest, dict) and manifest.get("format") == ARCHIVE_FORMAT


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
