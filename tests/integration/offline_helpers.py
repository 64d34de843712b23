"""Exports and archives of a small signed ledger, and the edits a forger makes to them."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from labledger.cli import main
from labledger.services.archive import write_archive
from labledger.services.export import export_log
from labledger.storage.merkle_log import SqlLog
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.support import SIGNER, commit, push_payload, session_spec

KEY = SIGNER.verifier
Lines = list[dict[str, Any]]


def signed_ledger(ledger: Ledger) -> Ledger:
    """Two pushes of two commits, each integrated under its own signed checkpoint."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    log = SqlLog(ledger.engine)
    for ref in ("refs/heads/main", "refs/heads/feature"):
        deliver(ledger.store, push_payload([commit(), commit()], ref=ref))
        log.integrate(SIGNER, datetime.now(UTC))
    return ledger


def exported(ledger: Ledger, folder: Path) -> Path:
    export_log(ledger.engine, folder, KEY)
    return folder


def archived(ledger: Ledger, folder: Path) -> Path:
    now = datetime.now(UTC)
    write_archive(ledger.engine, folder, KEY, before=datetime(2999, 1, 1, tzinfo=UTC), actor="t",
                  now=now)  # fmt: skip
    return folder


def read_lines(path: Path) -> Lines:
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8")
    return [json.loads(x) for x in text.splitlines() if x.strip()]


def write_lines(path: Path, lines: Lines) -> None:
    data = "".join(json.dumps(x) + "\n" for x in lines).encode("utf-8")
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def reseal(folder: Path, **fields: Any) -> None:
    """Make the manifest agree with the files (and set `fields`), as a careful forger would."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    manifest.update(fields)
    for name in manifest["files"]:
        if (folder / name).is_file():
            manifest["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def edit_entries(folder: Path, change: Callable[[Lines], Lines], **fields: Any) -> None:
    path = next(p for p in (folder / "entries.jsonl", folder / "entries.jsonl.gz") if p.exists())
    write_lines(path, change(read_lines(path)))
    reseal(folder, **fields)


def verify_cli(folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`labledger verify --export FOLDER` with a trusted key file; exit code and all output."""
    key = tmp_path / "trusted.pub"
    key.write_text(KEY.encode() + "\n", encoding="utf-8")
    capsys.readouterr()
    code = main(["verify", "--export", str(folder), "--public-key", str(key)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err
