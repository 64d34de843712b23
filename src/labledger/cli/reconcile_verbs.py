"""`labledger reconcile`: ask GitHub to redeliver the pushes the ledger missed, and with
`--activity` read back from GitHub's API what no redelivery can restore."""

from __future__ import annotations

import asyncio
import time

import click

from labledger.cli.context import EXIT_LEDGER_ERROR, Context, pass_context
from labledger.config import ConfigError
from labledger.services.reconcile import run_backfill, run_reconcile
from labledger.storage.reconcile_marks import ReconcileMarks


@click.command()
@click.option(
    "--activity",
    is_flag=True,
    help="Also record, from GitHub's repository activity, the pushes of session repositories "
    "that the ledger lacks (past the 3-day redelivery window), and check time_unconfirmed "
    "push times against it.",
)
@click.option(
    "--confirm-all",
    is_flag=True,
    help="With --activity: check the push time of every attempt that counts, not only those "
    "marked time_unconfirmed.",
)
@click.option(
    "--watch",
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    help="Run again every SECONDS until interrupted.",
)
@pass_context
def reconcile(obj: Context, activity: bool, confirm_all: bool, watch: float | None) -> None:
    """Redeliver every push GitHub failed to deliver (hooks: LABLEDGER_GITHUB_HOOKS)."""
    settings = obj.settings
    if confirm_all and not activity:
        raise click.UsageError("--confirm-all checks times against the activity: add --activity")
    if not settings.github_hooks and not activity:
        raise ConfigError("LABLEDGER_GITHUB_HOOKS is not set; name the hooks to reconcile")
    marks = ReconcileMarks(obj.store.engine)
    while True:
        complete = True
        if settings.github_hooks:
            for report in asyncio.run(run_reconcile(settings, marks, _progress)):
                click.echo(report.line())
                complete &= report.complete
        if activity:
            found = asyncio.run(run_backfill(settings, obj.store, marks, _progress, confirm_all))
            for repository in found:
                click.echo(repository.line())
                complete &= repository.complete
        if watch is None:
            break
        time.sleep(watch)
    if not complete:
        raise SystemExit(EXIT_LEDGER_ERROR)


def _progress(line: str) -> None:
    click.echo(line, err=True)
