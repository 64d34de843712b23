"""Offline verification vouches only for what a signed checkpoint covers (issue 21, items 2
and 3): exports and archives, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import pytest

from labledger.core.leaves import LEAF_VERSION, canonical_json, parse_leaf, personal_commitment
from labledger.services.archive import verify_archive
from labledger.services.export import verify_export
from tests.conftest import Ledger
from tests.integration.offline_helpers import (
    KEY,
    Lines,
    archived,
    edit_entries,
    exported,
    read_lines,
    signed_ledger,
    verify_cli,
    write_lines,
)


def _codes(report: Any) -> set[str]:
    return {p.code for p in report.problems}


def test_unsigned_export_is_not_intact(
    ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hand-made export of one leaf and no checkpoint exits 3 naming the missing signature."""
    folder = exported(signed_ledger(ledger), tmp_path / "export")
    write_lines(folder / "checkpoints.jsonl", [])
    edit_entries(folder, lambda lines: lines[:1], tree_size=1)
    assert "unsigned" in _codes(verify_export(folder, KEY))
    code, out = verify_cli(folder, tmp_path, capsys)
    assert code == 3 and "no signed checkpoint" in out, out


def test_unsigned_archive_is_not_intact(
    ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An archive whose checkpoints were removed vouches for nothing and exits 3."""
    folder = archived(signed_ledger(ledger), tmp_path / "archive")
    write_lines(folder / "checkpoints.jsonl", [])
    edit_entries(folder, lambda lines: lines)
    assert "unsigned" in _codes(verify_archive(folder, KEY))
    code, out = verify_cli(folder, tmp_path, capsys)
    assert code == 3 and "no signed checkpoint" in out, out


def _forged_attempt(lines: Lines) -> dict[str, Any]:
    """A copy of the last attempt's leaf with another commit, appended as the next leaf."""
    last = next(x for x in reversed(lines) if x["table"] == "attempts")
    kind, content = parse_leaf(base64.b64decode(last["leaf"]))
    content = {**content, "id": content["id"] + 100, "commit_sha": "f" * 40}
    leaf = f"{LEAF_VERSION}\n{kind}\n".encode() + canonical_json(content)
    index = lines[-1]["leaf_index"] + 1
    return {
        **last,
        "leaf_index": index,
        "id": content["id"],
        "leaf": base64.b64encode(leaf).decode(),
    }


def test_entries_appended_after_newest_checkpoint_are_not_intact(
    ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An entry forged after the newest signed checkpoint exits 3, naming its leaf."""
    folder = exported(signed_ledger(ledger), tmp_path / "export")
    size = len(read_lines(folder / "entries.jsonl"))
    edit_entries(folder, lambda lines: [*lines, _forged_attempt(lines)], tree_size=size + 1)
    report = verify_export(folder, KEY)
    unsigned = [p for p in report.problems if p.code == "unsigned_entries"]
    assert [p.leaf_index for p in unsigned] == [size]
    code, out = verify_cli(folder, tmp_path, capsys)
    assert code == 3 and f"beyond the newest signed checkpoint (of {size} entries)" in out, out


def test_entries_appended_after_an_archives_checkpoint_are_not_intact(
    ledger: Ledger, tmp_path: Path
) -> None:
    """An archive row appended past its covering checkpoint is reported as unsigned."""
    folder = archived(signed_ledger(ledger), tmp_path / "archive")

    def append(lines: Lines) -> Lines:
        forged = copy.deepcopy(next(x for x in reversed(lines) if x["kind"] == "attempt"))
        forged["leaf_index"] = lines[-1]["leaf_index"] + 1
        forged["id"] = forged["row"]["id"] = forged["id"] + 100
        return [*lines, forged]

    end = len(read_lines(folder / "entries.jsonl.gz"))
    edit_entries(folder, append, end_leaf=end + 1)
    assert "unsigned_entries" in _codes(verify_archive(folder, KEY))


def test_intact_export_states_the_signed_tree_it_vouches_for(
    ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`intact` names the size and root of the signed tree the export was checked against."""
    folder = exported(signed_ledger(ledger), tmp_path / "export")
    size = len(read_lines(folder / "entries.jsonl"))
    report = verify_export(folder, KEY)
    code, out = verify_cli(folder, tmp_path, capsys)
    assert code == 0, out
    assert f"signed tree of {size} entries" in out and report.root.hex() in out


PERSONAL = [("attempt", "author_name"), ("attempt", "committer_email"),
            ("push", "pusher_name"), ("push", "sender_login")]  # fmt: skip


@pytest.mark.parametrize(("kind", "field"), PERSONAL, ids=[f for _, f in PERSONAL])
def test_rewritten_personal_fields_in_archive_are_detected(
    ledger: Ledger, tmp_path: Path, kind: str, field: str
) -> None:
    """A rewritten name with the original commitment put beside it no longer verifies."""
    folder = archived(signed_ledger(ledger), tmp_path / "archive")
    from labledger.core.leaves import LEAF_FIELDS

    def rewrite(lines: Lines) -> Lines:
        line = next(x for x in lines if x["kind"] == kind)
        row, personal = line["row"], LEAF_FIELDS[kind][1]
        salt = bytes.fromhex(row["personal_salt"])
        row["personal_sha256"] = personal_commitment(salt, {n: row[n] for n in personal}).hex()
        row[field] = "Somebody Else"
        return lines

    edit_entries(folder, rewrite)
    report = verify_archive(folder, KEY)
    assert "personal_fields" in _codes(report), report.problems


def _relabel(lines: Lines) -> Lines:
    line = next(x for x in lines if x["table"] == "attempts")
    line["id"] += 1
    return lines


@pytest.mark.parametrize("make", [exported, archived], ids=["export", "archive"])
def test_relabelled_entry_is_detected(ledger: Ledger, tmp_path: Path, make: Any) -> None:
    """A line whose table or id is not its leaf's (an attempt shown as another) is reported."""
    folder = make(signed_ledger(ledger), tmp_path / "folder")
    edit_entries(folder, _relabel)
    report = verify_export(folder, KEY) if make is exported else verify_archive(folder, KEY)
    assert "entry_label" in _codes(report), report.problems
