"""`verify-receipt` against the shared known-answer receipts in tests/fixtures/receipts/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labledger.cli import main

VECTORS = Path(__file__).parents[1] / "fixtures" / "receipts"
INDEX = json.loads((VECTORS / "vectors.json").read_text(encoding="utf-8"))
KEY = str(VECTORS / INDEX["public_key"])
TAMPERED = [v for v in INDEX["vectors"] if v["verdict"] == "invalid"]


def _verify(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["verify-receipt", str(path), "--public-key", KEY])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_valid_vector_verifies(capsys: pytest.CaptureFixture[str]) -> None:
    """The untouched receipt is valid and says which signed tree holds the entry."""
    (valid,) = [v for v in INDEX["vectors"] if v["verdict"] == "valid"]
    code, out = _verify(VECTORS / valid["file"], capsys)
    assert code == 0, out
    assert out.startswith("valid: leaf ")


@pytest.mark.parametrize("vector", TAMPERED, ids=[v["file"] for v in TAMPERED])
def test_doctored_receipt_field_is_rejected(
    vector: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Any edit of a receipt exits 3 with one line that names the edited field."""
    code, out = _verify(VECTORS / vector["file"], capsys)
    assert code == 3, out
    assert len(out.strip().splitlines()) == 1, out
    assert out.startswith("invalid: ") and vector["field"] in out, out


def test_every_readable_field_has_a_tampered_vector() -> None:
    """The vectors cover every field of the valid receipt's entry content."""
    valid = json.loads((VECTORS / "valid.json").read_text(encoding="utf-8"))
    fields = {v["field"] for v in TAMPERED}
    assert {f"entry.content.{k}" for k in valid["entry"]["content"]} <= fields
    assert {"entry.kind", "leaf", "leaf_hash", "leaf_index", "tree_size"} <= fields
    assert {"inclusion_proof", "checkpoint"} <= fields


def test_receipt_issued_before_the_change_still_verifies(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A receipt issued by the code before receipts bound their content (b55e98c) is valid."""
    code, out = _verify(VECTORS / "receipt-issued-before-change.json", capsys)
    assert code == 0, out
    assert out.startswith("valid: leaf ")


@pytest.mark.parametrize(
    "text",
    ["not json at all", "[1, 2]", '{"format": "labledger-receipt/v9"}', '{"format": 1}', "\xff"],
)
def test_malformed_receipt_is_a_one_line_error(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that is not a receipt exits 2 with one line, never a traceback."""
    path = tmp_path / "receipt.json"
    path.write_text(text, encoding="utf-8", errors="surrogateescape")
    code, out = _verify(path, capsys)
    assert code == 2, out
    assert len(out.strip().splitlines()) == 1 and "Traceback" not in out, out
