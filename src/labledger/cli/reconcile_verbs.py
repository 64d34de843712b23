"""`labledger reconcile`: ask GitHub to redeliver the pushes the ledger missed."""

from __future__ import annotations

import asyncio
import time

import click

from labledger.cli.context import EXIT_LEDGER_ERROR, Context, pass_context
from labledger.core.errors import ConfigError


@click.command()
@click.option(
    "--watch",
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    help="Run again every SECONDS until interrupted.",
)
@pass_context
def reconcile(obj: Context, watch: float | None) -> None:
    """Redeliver every push GitHub failed to deliver (hooks: LABLEDGER_GITHUB_HOOKS)."""
    from labledger.services.reconcile import run_reconcile

    settings = obj.settings
    if not settings.github_hooks:
        raise ConfigError("LABLEDGER_GITHUB_HOOKS is not set; name the hooks to reconcile")
    marks = obj.ledger.reconcile_marks
    while True:
        reports = asyncio.run(run_reconcile(settings, marks, _progress))
        for report in reports:
            click.echo(report.line())
        if watch is None:
            break
        time.sleep(watch)
    if not all(r.complete for r in reports):
        raise SystemExit(EXIT_LEDGER_ERROR)


def _progress(line: str) -> None:
    click.echo(line, err=True)
