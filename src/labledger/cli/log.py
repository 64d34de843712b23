"""Tamper evidence: keys, integration, checkpoints, proofs, verification, export."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import click

from labledger.archive import is_archive, verify_archive
from labledger.cli.context import EXIT_TAMPERED, Context, emit, json_option, pass_context
from labledger.config import ConfigError
from labledger.core.errors import NotFound
from labledger.core.merkle import verify_consistency
from labledger.core.note import SignerKey, VerifierKey, is_valid_key_name
from labledger.core.receipt import Receipt
from labledger.core.receipt import verify_receipt as check_receipt
from labledger.core.verify import VerifyReport
from labledger.export import export_log, verify_export
from labledger.storage.leaf_rows import ENTRY_TABLES
from labledger.storage.verification import verify_database

PATH = click.Path(path_type=Path, dir_okay=False)


@click.group()
def keys() -> None:
    """The checkpoint signing key."""


@keys.command("init")
@click.option("--name", help="Log origin and key name (default: labledger/<host>/<random>).")
@click.option("--exist-ok", is_flag=True, help="Succeed quietly when the key already exists.")
@pass_context
def keys_init(obj: Context, name: str | None, exist_ok: bool) -> None:
    """Create the signing key at LABLEDGER_SIGNING_KEY_FILE; never overwrites one."""
    path = obj.settings.signing_key_file
    if path.exists():
        if exist_ok:
            obj.settings.signer()  # still refuse a file that is not a key
            return
        raise ConfigError(f"{path} already exists; a log keeps its key (remove it by hand)")
    name = name or f"labledger/{os.uname().nodename}/{os.urandom(4).hex()}"
    if not is_valid_key_name(name):
        raise click.BadParameter(f"{name!r}: no spaces or '+' allowed", param_hint="--name")
    signer = SignerKey.generate(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(signer.encode() + "\n")
    click.echo(f"signing key written to {path} (keep it secret, back it up)", err=True)
    click.echo(signer.verifier.encode())


@keys.command("show")
@pass_context
def keys_show(obj: Context) -> None:
    """Print the public verifier key (give it to teachers and appeal panels)."""
    click.echo(obj.settings.signer().verifier.encode())


@click.command()
@click.option("--watch", type=float, help="Keep integrating every N seconds.")
@pass_context
def integrate(obj: Context, watch: float | None) -> None:
    """Add committed entries to the Merkle tree and sign a checkpoint."""
    signer = obj.settings.signer()
    while True:
        checkpoint = obj.log.integrate(signer)
        if checkpoint is not None:
            click.echo(
                f"checkpoint: {checkpoint.tree_size} entries, "
                f"root sha256:{checkpoint.root_hash.hex()}"
            )
        elif watch is None:
            click.echo("nothing to integrate")
        if watch is None:
            return
        time.sleep(watch)


@click.command()
@click.option("--out", type=PATH, help="Write the signed note to FILE (e.g. a witness repository).")
@json_option
@pass_context
def checkpoint(obj: Context, out: Path | None, as_json: bool) -> None:
    """Print the newest signed checkpoint."""
    latest = obj.log.latest_checkpoint()
    if latest is None:
        raise NotFound("checkpoint", "(none signed yet; run `labledger integrate`)")
    if as_json and out is None:
        from labledger.http.schemas import CheckpointOut

        shown = CheckpointOut(
            tree_size=latest.tree_size,
            root_hash=f"sha256:{latest.root_hash.hex()}",
            created_at=latest.created_at,
            note=latest.note,
            public_key=obj.settings.signer().verifier.encode(),
        )
        emit(shown, as_json, [])
    elif out is None:
        click.echo(latest.note, nl=False)
    else:
        out.write_text(latest.note, encoding="utf-8")
        click.echo(f"checkpoint of {latest.tree_size} entries written to {out}", err=True)


@click.group()
def prove() -> None:
    """Receipts and consistency proofs."""


@prove.command("attempt")
@click.argument("attempt_id", type=int)
@click.option("--out", type=PATH, help="Write the receipt to FILE instead of standard output.")
@pass_context
def prove_attempt(obj: Context, attempt_id: int, out: Path | None) -> None:
    """A receipt proving one attempt is in the ledger, checkable offline."""
    obj.store.get_attempt(attempt_id)  # an unknown attempt is "not found", not "not yet logged"
    receipt = obj.log.receipt("attempt", attempt_id)
    text = json.dumps(receipt.to_json(), indent=2, ensure_ascii=False) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


@prove.command("consistency")
@click.argument("old_size", type=int)
@click.argument("new_size", type=int, required=False)
@pass_context
def prove_consistency(obj: Context, old_size: int, new_size: int | None) -> None:
    """Prove the tree of NEW_SIZE (default: newest) extends the tree of OLD_SIZE."""
    new = obj.log.latest_checkpoint() if new_size is None else obj.log.checkpoint_at(new_size)
    old = obj.log.checkpoint_at(old_size)
    if new is None or old is None:
        raise NotFound("checkpoint", f"of size {old_size if old is None else new_size}")
    proof = obj.log.consistency_proof(old.tree_size, new.tree_size)
    verify_consistency(old.tree_size, new.tree_size, old.root_hash, new.root_hash, proof)
    click.echo(
        json.dumps(
            {
                "old_size": old.tree_size,
                "new_size": new.tree_size,
                "proof": [h.hex() for h in proof],
            },
            indent=2,
        )
    )


def _key(obj: Context | None, public_key: Path | None) -> VerifierKey:
    if public_key is not None:
        return VerifierKey.parse(public_key.read_text(encoding="utf-8").strip())
    if obj is None:
        raise click.UsageError("--public-key is required")
    return obj.settings.signer().verifier


@click.command()
@click.option(
    "--export",
    "export_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Verify an export or an archive offline (no database).",
)
@click.option(
    "--public-key",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Verifier key file (default: derived from the signing key).",
)
@click.option(
    "--against",
    "witnesses",
    multiple=True,
    type=click.Path(path_type=Path, exists=True),
    help="An earlier checkpoint saved elsewhere; the ledger must extend it.",
)
@click.option("--skip-bodies", is_flag=True, help="Do not re-hash the stored raw bodies.")
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    help="Worker processes reading the database (default: one per available CPU).",
)
@json_option
@pass_context
def verify(
    obj: Context,
    export_dir: Path | None,
    public_key: Path | None,
    witnesses: tuple[Path, ...],
    skip_bodies: bool,
    processes: int | None,
    as_json: bool,
) -> None:
    """Recompute every leaf, rebuild the tree, check every signed checkpoint."""
    key = _key(obj if export_dir is None else None, public_key)
    saved = [(str(p), p.read_text(encoding="utf-8")) for p in witnesses]
    total = _work_to_verify(obj, export_dir)
    with click.progressbar(length=total, label="verifying", file=sys.stderr, show_pos=True) as bar:
        if export_dir is not None and is_archive(export_dir):
            report = verify_archive(export_dir, key, saved, progress=bar.update)
        elif export_dir is not None:
            report = verify_export(export_dir, key, saved, progress=bar.update)
        else:
            report = verify_database(
                obj.store.engine,
                key,
                saved,
                check_bodies=not skip_bodies,
                progress=bar.update,
                processes=processes,
            )
    if as_json:
        click.echo(json.dumps(_report_json(report), indent=2, ensure_ascii=False))
    else:
        _print_report(report)
    if not report.ok:
        raise SystemExit(EXIT_TAMPERED)


def _work_to_verify(obj: Context, export_dir: Path | None) -> int:
    """Rows to recompute plus leaves to check (database), or lines to read (export)."""
    if export_dir is not None and is_archive(export_dir):
        manifest = json.loads((export_dir / "manifest.json").read_text(encoding="utf-8"))
        return int(manifest.get("end_leaf", 0)) - int(manifest.get("first_leaf", 0))
    if export_dir is not None:
        with (export_dir / "entries.jsonl").open("rb") as entries:
            return sum(1 for _ in entries)
    counts = obj.store.count_rows()
    rows = sum(counts[t.name] for t in ENTRY_TABLES.values())
    return rows + counts["log_entries"]


def _report_json(report: VerifyReport) -> dict[str, object]:
    """The report as data: the same fields and problem codes `_print_report` shows."""
    return {
        "intact": report.ok,
        "entries": report.entries,
        "checkpoints": report.checkpoints,
        "tree_size": report.tree_size,
        "root_hash": f"sha256:{report.root.hex()}",
        "pending": report.pending,
        "problems": [asdict(p) for p in report.problems],
    }


def _print_report(report: VerifyReport) -> None:
    if report.ok:
        click.echo(
            f"intact: {report.entries} entries, {report.checkpoints} checkpoints verified, "
            f"root sha256:{report.root.hex()} ({report.pending} entries awaiting integration)"
        )
        return
    first = report.problems[0]
    click.echo(f"TAMPERED: {len(report.problems)} problem(s); first: {first.code}: {first.detail}")
    for p in report.problems[:20]:
        where = f"leaf {p.leaf_index} " if p.leaf_index is not None else ""
        what = f"{p.table} {p.entry_id} " if p.table else ""
        diff = f" expected {p.expected} actual {p.actual}" if p.expected or p.actual else ""
        click.echo(f"  {p.code}: {where}{what}{diff}".rstrip())


@click.command("verify-receipt")
@click.argument("receipt_file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--public-key", required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True)
)
def verify_receipt_command(receipt_file: Path, public_key: Path) -> None:
    """Check one receipt offline with the log's public key."""
    try:
        saved = json.loads(receipt_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.BadParameter(
            f"{receipt_file} is not a JSON receipt ({exc}); make one with "
            "`labledger prove attempt ID --out FILE`",
            param_hint="RECEIPT_FILE",
        ) from None
    receipt = Receipt.from_json(saved)
    cp = check_receipt(receipt, _key(None, public_key))
    click.echo(
        f"valid: leaf {receipt.leaf_index} is in the tree of {cp.size} entries "
        f"signed by {cp.origin}"
    )


@click.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@pass_context
def export(obj: Context, directory: Path) -> None:
    """Write the log (leaf bytes and checkpoints) to DIRECTORY for offline verification."""
    key = obj.settings.signer().verifier
    latest = obj.log.latest_checkpoint()
    total = latest.tree_size if latest else 0
    with click.progressbar(length=total, label="exporting", file=sys.stderr, show_pos=True) as bar:
        manifest = export_log(obj.store.engine, directory, key, progress=bar.update)
    click.echo(f"exported {manifest['tree_size']} entries to {directory} (root {manifest['root']})")
