"""Retention verbs: `retention plan`, `archive`, `purge`, `erase` (RETENTION.md)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from labledger.cli.context import TIME, Context, pass_context
from labledger.core.retention_rules import Windows

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from labledger.compose import RetentionPlan
    from labledger.config import Settings


def _windows(settings: Settings) -> Windows:
    return Windows.of_days(
        settings.retention_records_days,
        settings.retention_raw_bodies_days,
        settings.retention_audit_days,
    )


@click.group()
def retention() -> None:
    """What the retention policy keeps and removes."""


@retention.command("plan")
@click.option("--as-of", "as_of", type=TIME, help="Plan for this time instead of now.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_context
def retention_plan(obj: Context, as_of: datetime | None, as_json: bool) -> None:
    """Show, per table, what is past its window and what `purge` would remove today."""
    from labledger.compose import read_retention_plan

    windows = _windows(obj.settings)
    now = (as_of or datetime.now(UTC)).astimezone(UTC)
    plan = read_retention_plan(obj.ledger.engine, windows, now)
    if as_json:
        click.echo(json.dumps(_plan_json(plan, windows), indent=2))
        return
    click.echo(
        f"retention plan as of {now.isoformat()} (windows: records {windows.records.days} d, "
        f"raw bodies {windows.raw_bodies.days} d, audit {windows.audit.days} d)"
    )
    click.echo(f"archives cover leaves [0, {plan.archived_end})")
    click.echo(f"{'table':<22}{'past window':>12}{'purgeable':>11}{'not archived':>14}")
    for name, table in [*plan.tables.items(), ("raw bodies", plan.raw_bodies)]:
        click.echo(
            f"{name:<22}{table.expired:>12}{table.purgeable:>11}{table.waiting_for_archive:>14}"
        )
    waiting = sum(t.waiting_for_archive for t in plan.tables.values())
    waiting += plan.raw_bodies.waiting_for_archive
    if waiting:
        click.echo("run `labledger archive --before DATE --to DIR` before purging the rest")


def _plan_json(plan: RetentionPlan, windows: Windows) -> dict[str, object]:
    return {
        "as_of": plan.as_of.isoformat(),
        "windows_days": {
            "records": windows.records.days,
            "raw_bodies": windows.raw_bodies.days,
            "audit": windows.audit.days,
        },
        "archived_end": plan.archived_end,
        "tables": {
            name: {
                "past_window": t.expired,
                "purgeable": t.purgeable,
                "not_archived": t.waiting_for_archive,
            }
            for name, t in [*plan.tables.items(), ("raw_bodies", plan.raw_bodies)]
        },
    }


@click.command()
@click.option("--before", required=True, type=TIME, help="Archive what was logged before TIME.")
@click.option(
    "--to",
    "directory",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="An empty or new folder for the archive.",
)
@click.option("--actor", default="cli", show_default=True, help="Who archives (audit log).")
@pass_context
def archive(obj: Context, before: datetime, directory: Path, actor: str) -> None:
    """Write the next archive: every leaf after the last archive, up to the newest checkpoint
    signed before TIME, with its rows; verify it with `labledger verify --export DIR`."""
    from labledger.services.archive import write_archive

    key = obj.settings.signer().verifier
    engine = obj.ledger.engine
    latest = obj.log.latest_checkpoint()
    total = latest.tree_size if latest else 0
    with click.progressbar(length=total, label="archiving", file=sys.stderr, show_pos=True) as bar:
        manifest = write_archive(
            engine,
            directory,
            key,
            before=before.astimezone(UTC),
            actor=actor,
            now=datetime.now(UTC),
            progress=bar.update,
        )
    click.echo(
        f"archive {manifest['archive_id']}: leaves [{manifest['first_leaf']}, "
        f"{manifest['end_leaf']}) written to {directory}"
    )


@click.command("purge")
@click.option("--actor", default="cli", show_default=True, help="Who purges (audit log).")
@click.option("--dry-run", is_flag=True, help="Only show what would go (as `retention plan`).")
@pass_context
def purge_command(obj: Context, actor: str, dry_run: bool) -> None:
    """Remove what an archive covers and is past its window; tombstones keep the tree whole.

    Runs on LABLEDGER_MAINTENANCE_DATABASE_URL (default: LABLEDGER_DATABASE_URL): on
    PostgreSQL the schema owner, since the server's role may not delete.
    """
    from labledger.compose import purge, read_retention_plan

    if dry_run:
        click.get_current_context().invoke(retention_plan, as_of=None, as_json=False)
        return
    windows, now = _windows(obj.settings), datetime.now(UTC)
    with _maintenance_engine(obj) as engine:
        plan = read_retention_plan(engine, windows, now)
        total = sum(len(ids) for ids in plan.purge.values())
        total += len(plan.drop_bodies) + len(plan.outbox)
        with click.progressbar(
            length=total, label="purging", file=sys.stderr, show_pos=True
        ) as bar:
            result = purge(engine, windows, now, actor, progress=bar.update)
    if result.event_id is None:
        click.echo("nothing to purge: nothing archived is past its window")
        return
    removed = ", ".join(f"{n} {t}" for t, n in result.removed.items()) or "no rows"
    click.echo(
        f"purged {removed}; dropped {result.bodies_dropped} raw bodies "
        f"(audit event {result.event_id})"
    )


@click.command("erase")
@click.option("--subject", "subject_id", help="The platform's subject id of the person.")
@click.option(
    "--account",
    help="The person's forge account, FORGE:NUMERIC_ID (e.g. github:583231).",
)
@click.option("--reason", required=True, help="Why (e.g. the request's reference); audited.")
@click.option("--actor", default="cli", show_default=True, help="Who erases (audit log).")
@pass_context
def erase_command(
    obj: Context, subject_id: str | None, account: str | None, reason: str, actor: str
) -> None:
    """Make a person's names, emails, logins and raw bodies unreadable; the ledger still
    verifies. Integrates pending entries first, so every erased row is in the Merkle log."""
    from labledger.compose import erase

    parsed = _parse_account(account) if account is not None else None
    if (subject_id is None) == (parsed is None):
        raise click.UsageError("give exactly one of --subject or --account")
    obj.log.integrate(obj.settings.signer())
    with _maintenance_engine(obj) as engine:
        result = erase(
            engine,
            subject_id=subject_id,
            account=parsed,
            reason=reason,
            actor=actor,
            now=datetime.now(UTC),
        )
    if result.event_id is None:
        click.echo("nothing to erase: no personal data of that person is stored")
        return
    click.echo(
        f"erased personal fields of {result.attempts} attempts and {result.pushes} pushes, "
        f"and {result.raw_bodies} raw bodies (audit event {result.event_id})"
    )


def _parse_account(text: str) -> tuple[str, int]:
    forge, sep, number = text.partition(":")
    if not sep or not forge or not number.isdigit():
        raise click.BadParameter(
            "expected FORGE:NUMERIC_ID, e.g. github:583231", param_hint="--account"
        )
    return forge, int(number)


@contextmanager
def _maintenance_engine(obj: Context) -> Iterator[Engine]:
    """LABLEDGER_MAINTENANCE_DATABASE_URL's engine, else the one every command uses."""
    from labledger.compose import make_engine

    url = obj.settings.maintenance_database_url
    if url is None:
        yield obj.ledger.engine
        return
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
