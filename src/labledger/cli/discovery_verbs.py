"""`labledger sessions discover`: one session per student repository of an organisation."""

from __future__ import annotations

import asyncio

import click

from labledger.cli.context import EXIT_LEDGER_ERROR, TIME, Context, pass_context


@click.command("discover")
@click.option("--org", required=True, help="The GitHub organisation holding the repositories.")
@click.option("--match", required=True, help="Repository name glob, e.g. 'lab1-*'.")
@click.option("--lab-id", required=True, help="The lab every discovered session belongs to.")
@click.option("--opens-at", type=TIME, help="Default: when each repository was created.")
@click.option("--due-at", type=TIME, help="A change for existing sessions is appended, audited.")
@click.option("--closes-at", type=TIME, help="As --due-at.")
@pass_context
def sessions_discover(obj: Context, /, **options: object) -> None:
    """Create a session per repository of ORG matching GLOB; a second run adds only new ones."""
    from labledger.services.discovery import Discovery, run_discovery

    found = Discovery(**options)  # type: ignore[arg-type]
    report = asyncio.run(run_discovery(obj.settings, obj.store, found, _warn))
    click.echo(report.line(found))
    if report.unresolved:
        raise SystemExit(EXIT_LEDGER_ERROR)


def _warn(line: str) -> None:
    click.secho(line, err=True, fg="red" if line.startswith("WARNING") else None)
