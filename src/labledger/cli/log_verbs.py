"""Tamper evidence: keys, integration, checkpoints, proofs, verification, export."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import click

from labledger.cli.context import EXIT_TAMPERED, Context, emit, json_option, pass_context
from labledger.core.errors import ConfigError, FileRefused, MalformedKey, NotFound, ReceiptRejected
from labledger.core.merkle import verify_consistency
from labledger.safe_files import create_private, make_private_parents, read_json, read_small

if TYPE_CHECKING:
    from labledger.core.note import VerifierKey
    from labledger.core.verify import VerifyReport

PATH = click.Path(path_type=Path, dir_okay=False)


@click.group()
def keys() -> None:
    """The checkpoint signing key."""


@keys.command("init")
@click.option("--name", help="Log origin and key name: must be this ledger's (the default).")
@click.option("--exist-ok", is_flag=True, help="Succeed quietly when the key already exists.")
@pass_context
def keys_init(obj: Context, name: str | None, exist_ok: bool) -> None:
    """Create the signing key at LABLEDGER_SIGNING_KEY_FILE; never overwrites one."""
    from labledger.core.note import SignerKey, is_valid_key_name

    path = obj.settings.signing_key_file
    if path.exists():
        if exist_ok:
            obj.settings.signer()  # still refuse a file that is not a key
            return
        raise ConfigError(f"{path} already exists; a log keeps its key (remove it by hand)")
    # The origin was chosen at the first migration (random, never the host name): a key of
    # another name would sign checkpoints that every verifier of this ledger refuses.
    origin = obj.ledger.origin()
    if name is not None and name != origin:
        raise click.BadParameter(
            f"{name!r} is not this ledger's origin {origin!r} (omit --name)", param_hint="--name"
        )
    name = origin
    if not is_valid_key_name(name):
        raise ConfigError(f"this ledger's origin {name!r} cannot name a key (spaces or '+')")
    signer = SignerKey.generate(name)
    make_private_parents(path)
    with create_private(path) as handle:
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
    signer = obj.signer()
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
    from labledger.core.note import VerifierKey

    if public_key is not None:
        text = read_small(public_key, 4096).decode("utf-8", "replace").strip()
        try:
            return VerifierKey.parse(text)
        except (MalformedKey, ValueError) as exc:
            raise FileRefused(f"{public_key} is not a verifier key: {exc}") from None
    if obj is None:
        raise click.UsageError("--public-key is required")
    return obj.signer().verifier


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
@json_option
@pass_context
def verify(
    obj: Context,
    export_dir: Path | None,
    public_key: Path | None,
    witnesses: tuple[Path, ...],
    skip_bodies: bool,
    as_json: bool,
) -> None:
    """Recompute every leaf, rebuild the tree, check every signed checkpoint."""
    from labledger.services.archive import is_archive, verify_archive
    from labledger.services.export import verify_export

    key = _key(obj if export_dir is None else None, public_key)
    if export_dir is None:
        obj.check_origin(key.name)
    saved = [(str(p), read_small(p).decode("utf-8", "replace")) for p in witnesses]
    total = _work_to_verify(obj, export_dir)
    with click.progressbar(length=total, label="verifying", file=sys.stderr, show_pos=True) as bar:
        if export_dir is not None and is_archive(export_dir):
            report = verify_archive(export_dir, key, saved, progress=bar.update)
        elif export_dir is not None:
            report = verify_export(export_dir, key, saved, progress=bar.update)
        else:
            report = obj.ledger.verify(
                key,
                saved,
                check_bodies=not skip_bodies,
                progress=bar.update,
            )
    if as_json:
        click.echo(json.dumps(_report_json(report), indent=2, ensure_ascii=False))
    else:
        _print_report(report, offline=export_dir is not None)
    if not report.ok:
        raise SystemExit(EXIT_TAMPERED)


def _work_to_verify(obj: Context, export_dir: Path | None) -> int:
    """Rows to recompute plus leaves to check (database), or leaves the manifest announces
    (export or archive: only for the progress bar, so the manifest is trusted this far)."""
    if export_dir is not None:
        manifest = read_json(export_dir / "manifest.json")
        if not isinstance(manifest, dict):
            return 0
        sizes = [manifest.get(n) for n in ("tree_size", "end_leaf", "first_leaf")]
        size, end, first = (v if type(v) is int else 0 for v in sizes)
        return max(0, size or end - first)
    return obj.ledger.rows_to_verify()


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
        "limitations": [asdict(limit) for limit in report.limitations],
    }


def _print_report(report: VerifyReport, offline: bool = False) -> None:
    for limit in report.limitations:  # what "intact" below does not cover
        click.echo(f"limited: {limit.code}: {limit.detail}")
    if report.ok and offline:
        # Offline, "intact" holds only when a signed checkpoint covers every entry read.
        click.echo(
            f"intact: the signed tree of {report.tree_size} entries, root "
            f"sha256:{report.root.hex()} ({report.entries} entries read, "
            f"{report.checkpoints} checkpoints verified)"
        )
        return
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
@click.argument("receipt_file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--public-key", required=True, type=click.Path(path_type=Path, dir_okay=False))
def verify_receipt_command(receipt_file: Path, public_key: Path) -> None:
    """Check one receipt offline with the log's public key: exit 0 valid, 3 invalid."""
    from labledger.core.receipt import Receipt
    from labledger.core.receipt import verify_receipt as check_receipt

    try:
        receipt = Receipt.from_file_bytes(read_small(receipt_file))
        cp = check_receipt(receipt, _key(None, public_key))
    except ReceiptRejected as exc:
        click.echo(f"invalid: {exc}")
        raise SystemExit(EXIT_TAMPERED) from None
    click.echo(
        f"valid: leaf {receipt.leaf_index} is in the tree of {cp.size} entries "
        f"signed by {cp.origin}"
    )


@click.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@pass_context
def export(obj: Context, directory: Path) -> None:
    """Write the log (leaf bytes and checkpoints) to DIRECTORY for offline verification."""
    from labledger.services.export import export_log

    key = obj.settings.signer().verifier
    latest = obj.log.latest_checkpoint()
    total = latest.tree_size if latest else 0
    with click.progressbar(length=total, label="exporting", file=sys.stderr, show_pos=True) as bar:
        manifest = export_log(obj.ledger.engine, directory, key, progress=bar.update)
    click.echo(f"exported {manifest['tree_size']} entries to {directory} (root {manifest['root']})")
