"""Offline verifiers treat their files as hostile, and what labledger writes stays private
(issue 21, item 8)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from labledger import safe_files
from labledger.cli import main
from labledger.core.errors import ExportRefused
from labledger.services.export import export_log
from labledger.storage.engine import make_engine
from tests.conftest import Ledger
from tests.integration.offline_helpers import (
    KEY,
    archived,
    exported,
    reseal,
    signed_ledger,
    verify_cli,
)
from tests.support import SIGNER

PROGRESS_LABELS = {"verifying", "exporting", "archiving"}


def _one_line_refusal(code: int, out: str) -> None:
    assert code == 2, out
    said = [x for x in out.strip().splitlines() if x.strip() not in PROGRESS_LABELS]
    assert "Traceback" not in out and len(said) == 1 and said[0].startswith("labledger: "), out


@pytest.mark.parametrize("name", ["../../etc/hostname", "/etc/hostname", "public-key.txt"])
def test_export_verify_refuses_paths_outside_its_folder(
    ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """A manifest naming any file but the export's own is refused without reading that file."""
    folder = exported(signed_ledger(ledger), tmp_path / "export")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][name] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    code, out = verify_cli(folder, tmp_path, capsys)
    _one_line_refusal(code, out)
    assert name in out
    outside = Path("/etc/hostname")
    if outside.exists():
        assert hashlib.sha256(outside.read_bytes()).hexdigest() not in out


def _fifo(path: Path, original: bytes) -> None:
    os.mkfifo(path)


def _dev_zero(path: Path, original: bytes) -> None:
    path.symlink_to("/dev/zero")


def _link_to_copy(path: Path, original: bytes) -> None:
    copy = path.with_name("copy-" + path.name)
    copy.write_bytes(original)
    path.symlink_to(copy.name)


SPECIAL = {"fifo": _fifo, "symlink-to-dev-zero": _dev_zero, "symlink-to-a-copy": _link_to_copy}


@pytest.mark.parametrize("member", ["entries.jsonl", "checkpoints.jsonl", "manifest.json"])
@pytest.mark.parametrize("make", SPECIAL.values(), ids=SPECIAL.keys())
def test_export_verify_refuses_special_files(
    ledger: Ledger,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    member: str,
    make: Callable[[Path, bytes], None],
) -> None:
    """A symbolic link, FIFO or device in place of an export's file is refused, not read."""
    folder = exported(signed_ledger(ledger), tmp_path / "export")
    path = folder / member
    original = path.read_bytes()
    path.unlink()
    make(path, original)
    code, out = verify_cli(folder, tmp_path, capsys)
    _one_line_refusal(code, out)
    assert member in out


def _bomb(block: bytes, copies: int) -> bytes:
    """A gzip file of `copies` members, each `block` deflated: cheap to make, huge inflated."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
    member = squeeze.compress(block) + squeeze.flush()
    return member * copies


SMALL_LINE_LIMIT = 1 << 20


BOMBS = {"zeros": (b"\0", "is longer than"), "newlines": (b"\n", "inflates more than")}


@pytest.mark.parametrize(("byte", "refusal"), BOMBS.values(), ids=BOMBS.keys())
def test_export_verify_bounds_decompressed_size(
    ledger: Ledger,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    byte: bytes,
    refusal: str,
) -> None:
    """A gzip bomb in an archive is refused in one line, without inflating it in memory. The
    bounds are checked at a small line limit and inflation ratio (the same code as at the
    real ones, which only a far larger and slower bomb would reach)."""
    monkeypatch.setattr(safe_files, "MAX_LINE_BYTES", SMALL_LINE_LIMIT)
    monkeypatch.setattr(safe_files, "MAX_INFLATION", 4)
    monkeypatch.setattr(safe_files, "INFLATION_ALLOWANCE", SMALL_LINE_LIMIT // 16)
    folder = archived(signed_ledger(ledger), tmp_path / "archive")
    (folder / "entries.jsonl.gz").write_bytes(_bomb(byte * (1 << 20), 200))
    reseal(folder)
    tracemalloc.start()
    try:
        code, out = verify_cli(folder, tmp_path, capsys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    _one_line_refusal(code, out)
    assert "entries.jsonl.gz" in out and refusal in out
    # Far below the bomb's 200 MiB: a line, the gzip buffers, and small files read whole.
    assert peak < safe_files.MAX_SMALL_FILE_BYTES + 3 * SMALL_LINE_LIMIT


MALFORMED = {
    "not-json": b"this is not json\n",
    "json-but-not-an-object": b"[1, 2, 3]\n",
    "missing-fields": b'{"leaf_index": 0}\n',
    "bad-base64": b'{"leaf_index": 0, "table": "sessions", "id": 1, "leaf": "%%%"}\n',
    "not-a-leaf": b'{"leaf_index": 0, "table": "sessions", "id": 1, "leaf": "AAAA"}\n',
    "not-utf8": b'{"leaf_index": 0, "table": "\xff"}\n',
}


@pytest.mark.parametrize("text", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_export_line_is_a_one_line_error(
    ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: bytes
) -> None:
    """A line of an export that is not a well-formed entry exits 2 with one line naming it."""
    folder = exported(signed_ledger(ledger), tmp_path / "export")
    (folder / "entries.jsonl").write_bytes(text)
    reseal(folder)
    code, out = verify_cli(folder, tmp_path, capsys)
    _one_line_refusal(code, out)
    assert "entries.jsonl line 1" in out


def test_malformed_archive_gzip_is_a_one_line_error(
    ledger: Ledger, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An archive whose entries are not gzip, or whose manifest is not JSON, exits 2."""
    folder = archived(signed_ledger(ledger), tmp_path / "archive")
    (folder / "entries.jsonl.gz").write_bytes(b"\x1f\x8b\x08 not really gzip")
    reseal(folder)
    _one_line_refusal(*verify_cli(folder, tmp_path, capsys))
    (folder / "manifest.json").write_text("{ not json")
    _one_line_refusal(*verify_cli(folder, tmp_path, capsys))


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, ledger: Ledger, tmp_path: Path) -> Path:
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", ledger.url)
    key = tmp_path / "signing.key"
    key.write_text(SIGNER.encode() + "\n")
    key.chmod(0o600)
    monkeypatch.setenv("LABLEDGER_SIGNING_KEY_FILE", str(key))
    signed_ledger(ledger)
    return tmp_path


def _verb(kind: str, target: Path) -> list[str]:
    if kind == "export":
        return ["export", str(target)]
    return ["archive", "--before", "2999-01-01T00:00:00Z", "--to", str(target)]


@pytest.mark.parametrize("kind", ["export", "archive"])
def test_export_refuses_non_empty_or_symlinked_target(
    cli_env: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    """`export` and `archive` write nothing through a link or into a folder holding files."""
    victim = cli_env / "victim.txt"
    victim.write_text("keep me")
    planted = cli_env / "planted"
    planted.mkdir()
    (planted / ("entries.jsonl" if kind == "export" else "checkpoints.jsonl")).symlink_to(victim)
    elsewhere = cli_env / "elsewhere"
    elsewhere.mkdir()
    (cli_env / "linked").symlink_to(elsewhere)
    for target in (planted, cli_env / "linked"):
        capsys.readouterr()
        code = main(_verb(kind, target))
        captured = capsys.readouterr()
        _one_line_refusal(code, captured.out + captured.err)
    assert victim.read_text() == "keep me" and not any(elsewhere.iterdir())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("kind", ["export", "archive"])
def test_personal_data_files_are_private(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """Exports, archives, a new SQLite database (with -wal, -shm) and a new key are 0600/0700."""
    old = os.umask(0o022)
    try:
        assert main(_verb(kind, cli_env / "out" / "folder")) == 0
        engine = make_engine(f"sqlite:///{cli_env / 'new.db'}")
        with engine.connect() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            made = [cli_env / f"new.db{s}" for s in ("", "-wal", "-shm")]
            modes = {p.name: _mode(p) for p in made}
        engine.dispose()
        monkeypatch.setenv("LABLEDGER_SIGNING_KEY_FILE", str(cli_env / "keys" / "new.key"))
        assert main(["keys", "init"]) == 0  # named after the ledger's origin
    finally:
        os.umask(old)
    folder = cli_env / "out" / "folder"
    assert {_mode(folder), _mode(folder.parent), _mode(cli_env / "keys")} == {0o700}
    assert {_mode(p) for p in folder.iterdir()} == {0o600}
    assert modes == {p.name: 0o600 for p in made}
    assert _mode(cli_env / "keys" / "new.key") == 0o600


def test_failed_export_leaves_nothing_behind(ledger: Ledger, tmp_path: Path) -> None:
    """An export that cannot be made (nothing signed yet) creates no folder and no file."""
    with pytest.raises(ExportRefused, match="no checkpoint"):
        export_log(ledger.engine, tmp_path / "new" / "export", KEY)
    assert not (tmp_path / "new" / "export").exists()
