"""The command starts light: help for the command and for each verb loads no web framework."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from labledger.cli import VERBS, cli
from labledger.cli.session_verbs import SESSION_VERBS, sessions

WEB = {"fastapi", "starlette", "uvicorn"}
DATABASE_AND_MODELS = {"sqlalchemy", "pydantic", "cryptography"}
EVERY_VERB = [[name] for name in VERBS] + [["sessions", name] for name in SESSION_VERBS]


def imported_after(argv: list[str]) -> set[str]:
    """Top-level packages a fresh interpreter holds after `labledger ARGV` ran."""
    probe = (
        "import sys\nfrom labledger.cli import main\n"
        f"code = main({argv!r})\n"
        "sys.stderr.write('\\n' + ' '.join(sys.modules))\n"
        "sys.exit(code)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return {name.split(".")[0] for name in done.stderr.splitlines()[-1].split()}


@pytest.mark.parametrize("flag", ["--help", "--version"])
def test_command_help_and_version_load_no_framework_database_or_models(flag: str) -> None:
    """`labledger --help` and `--version` import neither the web framework nor SQLAlchemy,
    pydantic or cryptography."""
    assert imported_after([flag]) & (WEB | DATABASE_AND_MODELS) == set()


@pytest.mark.parametrize("verb", EVERY_VERB, ids=" ".join)
def test_verb_help_loads_no_web_framework(verb: list[str]) -> None:
    """`labledger VERB --help` (every verb, every `sessions` verb) imports no web framework."""
    assert imported_after([*verb, "--help"]) & WEB == set()


def test_every_listed_session_verb_is_the_command_of_that_name() -> None:
    """Each lazily listed `sessions` verb resolves to a click command of the listed name."""
    context = click.Context(sessions, parent=click.Context(cli))
    for name in SESSION_VERBS:
        command = sessions.get_command(context, name)
        assert command is not None and command.name == name
