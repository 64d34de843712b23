"""Completeness: open gaps in push chains, and sessions imported from a roster."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from labledger.cli.context import Context, emit, json_option, pass_context
from labledger.core.errors import InvalidRequest
from labledger.core.model import LabSession

if TYPE_CHECKING:
    from labledger.services.roster import RosterRow


@click.command()
@click.option("--repository-id", type=int, help="Only this repository's gaps.")
@json_option
@pass_context
def gaps(obj: Context, repository_id: int | None, as_json: bool) -> None:
    """Open gaps in push chains: pushes whose `before` no recorded push ended at."""
    from labledger.http.schemas import GapOut

    found = [GapOut.of(g) for g in obj.store.push_chain_gaps(repository_id=repository_id)]
    lines = [
        f"{g.repository_full_name} ({g.repository_id})  {g.ref}  missing a push to "
        f"{g.missing_after[:12]} before push {g.push_id} (delivery {g.delivery_id})"
        for g in found
    ]
    emit(found, as_json, lines or ["no open gaps"])


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check every row and print what would be created.")
@pass_context
def sessions_import(obj: Context, file: Path, dry_run: bool) -> None:
    """Create the sessions of a CSV roster, all rows or none (columns: see README)."""
    from labledger.services.roster import match_existing, read_roster

    now = datetime.now(UTC)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRequest(f"{file} is not UTF-8 text; save the roster as CSV UTF-8") from None
    store = obj.store
    rows = read_roster(text, now)
    existing = [s for lab in {r.spec.lab_id for r in rows} for s in _lab_sessions(obj, lab)]
    rows = match_existing(rows, existing)
    new = [r for r in rows if r.existing is None]
    for r in rows:
        click.echo(_row_line(r, dry_run))
    if dry_run:
        click.echo(f"dry run: {len(new)} to create, {len(rows) - len(new)} already present")
        return
    opened = store.open_sessions([r.spec for r in new], "cli:import", now)
    picked = sum(len(p.attempt_ids) for p in opened)
    ids = ", ".join(str(p.session.id) for p in opened) or "none"
    click.echo(
        f"created {len(opened)} sessions ({ids}), {len(rows) - len(new)} already present; "
        f"picked up {picked} earlier attempts"
    )


def _lab_sessions(obj: Context, lab_id: str) -> list[LabSession]:
    found: list[LabSession] = []
    while page := obj.store.list_sessions(
        lab_id=lab_id, after=found[-1].id if found else 0, limit=500
    ):
        found.extend(page)
    return found


def _row_line(r: RosterRow, dry_run: bool) -> str:
    s = r.spec
    what = (
        f"present as session {r.existing.id}"
        if r.existing
        else ("would create" if dry_run else "create")
    )
    due = s.due_at.isoformat() if s.due_at else "-"
    return (
        f"row {r.row}: {what}  {s.lab_id}  {s.subject_id}  repository {s.repository_id}  "
        f"branches={s.branch_glob}  opens={s.opens_at.isoformat()}  due={due}"
    )
