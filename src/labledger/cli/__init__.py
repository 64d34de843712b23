"""The `labledger` command line. `main()` is the one place CLI errors become exit codes."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from labledger.cli import (
    completeness,
    discovery,
    dispatch,
    grading,
    ledger,
    log,
    reconcile,
    retention,
    server,
)
from labledger.cli.context import EXIT_LEDGER_ERROR, EXIT_USAGE, Context
from labledger.config import ConfigError
from labledger.core.errors import LedgerError


@click.group()
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML file with LABLEDGER_* keys (environment variables win).",
)
@click.version_option(package_name="labledger")
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None) -> None:
    """labledger: the Lab Attempt Ledger."""
    ctx.obj = Context(config_file)
    ctx.call_on_close(ctx.obj.close)


for command in (
    server.serve,
    server.migrate,
    ledger.sessions,
    ledger.attempts,
    ledger.ingest,
    log.keys,
    log.integrate,
    log.checkpoint,
    log.prove,
    log.verify,
    log.verify_receipt_command,
    log.export,
    grading.verifications,
    grading.report,
    dispatch.dispatch,
    retention.retention,
    retention.archive,
    retention.purge_command,
    retention.erase_command,
    completeness.gaps,
    reconcile.reconcile,
):
    cli.add_command(command)
ledger.sessions.add_command(completeness.sessions_import)
ledger.sessions.add_command(discovery.sessions_discover)


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="labledger", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return EXIT_USAGE
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE
    except ConfigError as exc:
        click.echo(f"labledger: configuration error: {exc}", err=True)
        return EXIT_USAGE
    except LedgerError as exc:
        click.echo(f"labledger: error: {exc}", err=True)
        return EXIT_LEDGER_ERROR
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_LEDGER_ERROR
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
