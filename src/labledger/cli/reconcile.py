"""`labledger reconcile`: ask GitHub to redeliver the pushes the ledger missed."""

from __future__ import annotations

import asyncio
import time

import click
import httpx2

from labledger.cli.context import EXIT_LEDGER_ERROR, Context, pass_context
from labledger.config import ConfigError, Settings
from labledger.forges.github_api import Backoff, GitHubClient
from labledger.reconcile import HookReport, reconcile_hooks
from labledger.storage.reconcile_marks import ReconcileMarks


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
    settings = obj.settings
    if not settings.github_hooks:
        raise ConfigError("LABLEDGER_GITHUB_HOOKS is not set; name the hooks to reconcile")
    marks = ReconcileMarks(obj.store.engine)
    while True:
        reports = asyncio.run(run_reconcile(settings, marks))
        for report in reports:
            click.echo(report.line())
        if watch is None:
            break
        time.sleep(watch)
    if not all(r.complete for r in reports):
        raise SystemExit(EXIT_LEDGER_ERROR)


async def run_reconcile(
    settings: Settings, marks: ReconcileMarks, backoff: Backoff | None = None
) -> list[HookReport]:
    """One pass over every configured hook; `serve` calls this on its schedule too."""
    token = settings.require_github_api()

    def progress(line: str) -> None:
        click.echo(line, err=True)

    async def sleep(seconds: float) -> None:
        progress(f"GitHub asks to wait: retrying in {seconds:.1f} s")
        await asyncio.sleep(seconds)

    async with httpx2.AsyncClient(timeout=30.0) as client:
        api = GitHubClient(client, token, settings.github_api_url, backoff or Backoff(), sleep)
        return await reconcile_hooks(api, marks, settings.github_hooks, progress)
