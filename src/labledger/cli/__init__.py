"""The `labledger` command line. `main()` is the one place CLI errors become exit codes.

Verbs are imported when they run, not when the command starts: `labledger --help` and
`--version` import click alone, and each verb pays only for the libraries it uses.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from importlib import import_module
from pathlib import Path
from typing import Any

import click

from labledger.cli.context import EXIT_LEDGER_ERROR, EXIT_USAGE, Context
from labledger.core.errors import ConfigError, GitHubUnavailable, LedgerError, MalformedInput

# name -> ("module:attribute", the verb's one-line help, shown by `--help` without an import).
# `sessions` is a group of the same kind, its verbs listed in cli.session_verbs.
VERBS: dict[str, tuple[str, str]] = {
    "serve": ("labledger.cli.server_verbs:serve", "Run the HTTP server (webhooks and API)."),
    "migrate": ("labledger.cli.server_verbs:migrate", "Create or upgrade the schema."),
    "sessions": ("labledger.cli.session_verbs:sessions", "Lab sessions."),
    "gaps": ("labledger.cli.completeness_verbs:gaps", "Open gaps in push chains (missing pushes)."),
    "reconcile": (
        "labledger.cli.reconcile_verbs:reconcile",
        "Ask GitHub to redeliver the pushes the ledger missed.",
    ),
    "attempts": ("labledger.cli.ledger_verbs:attempts", "Lab attempts."),
    "ingest": (
        "labledger.cli.ledger_verbs:ingest",
        "Record saved deliveries as the webhook would.",
    ),
    "keys": ("labledger.cli.log_verbs:keys", "The checkpoint signing key."),
    "integrate": (
        "labledger.cli.log_verbs:integrate",
        "Add entries to the tree, sign a checkpoint.",
    ),
    "checkpoint": ("labledger.cli.log_verbs:checkpoint", "Print the newest signed checkpoint."),
    "prove": ("labledger.cli.log_verbs:prove", "Receipts and consistency proofs."),
    "verify": ("labledger.cli.log_verbs:verify", "Recompute every leaf, check every checkpoint."),
    "verify-receipt": (
        "labledger.cli.log_verbs:verify_receipt_command",
        "Check one receipt offline with the log's public key.",
    ),
    "export": ("labledger.cli.log_verbs:export", "Write the log to DIRECTORY for offline checks."),
    "verifications": ("labledger.cli.grading_verbs:verifications", "Verification results."),
    "report": (
        "labledger.cli.grading_verbs:report",
        "Per session of a lab: attempts, late, status.",
    ),
    "dispatch": ("labledger.cli.notify_verbs:dispatch", "Send due notifications to subscribers."),
    "retention": ("labledger.cli.retention_verbs:retention", "What the retention policy keeps."),
    "archive": ("labledger.cli.retention_verbs:archive", "Archive old leaves (RETENTION.md)."),
    "purge": ("labledger.cli.retention_verbs:purge_command", "Remove what is past its window."),
    "erase": ("labledger.cli.retention_verbs:erase_command", "Erase one subject's personal data."),
}


class LazyVerbs(click.Group):
    """A group whose verbs are listed in `verbs` and imported on first use."""

    def __init__(self, *args: Any, verbs: Mapping[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.verbs = verbs

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.verbs)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.verbs:
            return None
        module, _, attribute = self.verbs[cmd_name][0].partition(":")
        command = getattr(import_module(module), attribute)
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, self.verbs[name][1]) for name in self.list_commands(ctx)])


@click.group(cls=LazyVerbs, verbs=VERBS)
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


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="labledger", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return EXIT_USAGE
    except click.UsageError as exc:
        click.echo(f"labledger: {_usage_line(exc)}", err=True)
        return EXIT_USAGE
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE
    except MalformedInput as exc:  # a file handed in that is not what it should be
        click.echo(f"labledger: error: {exc}", err=True)
        return EXIT_USAGE
    except LedgerError as exc:
        click.echo(f"labledger: error: {exc}", err=True)
        return EXIT_LEDGER_ERROR
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_LEDGER_ERROR
    except ConfigError as exc:
        click.echo(f"labledger: configuration error: {exc}", err=True)
        return EXIT_USAGE
    except GitHubUnavailable as exc:
        click.echo(f"labledger: GitHub unavailable: {exc}", err=True)
        return EXIT_LEDGER_ERROR
    return 0


def _usage_line(exc: click.UsageError) -> str:
    """click's usage error on one line, with where to read more."""
    where = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx is not None else ""
    return exc.format_message().replace("\n", " ") + where


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
