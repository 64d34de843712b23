"""The house's walls: which package may import which, checked on the source itself."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import click
import pytest

import labledger
from labledger.cli import VERBS, main
from labledger.cli.context import EXIT_LEDGER_ERROR, EXIT_USAGE
from labledger.core import errors

PACKAGE = Path(labledger.__file__).parent
EDGES = ("http", "cli")


def imported_modules(source: str, package: str) -> list[tuple[int, str]]:
    """Every module a module of `package` imports (at any depth, TYPE_CHECKING blocks
    included), spelled absolute."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            # `from labledger import storage` imports the package as a name
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
            found.append((node.lineno, base))
    return found


def storage_lines(source: str, package: str) -> list[int]:
    return [
        line
        for line, module in imported_modules(source, package)
        if module == "labledger.storage" or module.startswith("labledger.storage.")
    ]


def storage_imports(paths: list[Path]) -> list[str]:
    return [
        f"{path.relative_to(PACKAGE)}:{line}"
        for path in paths
        for line in storage_lines(
            path.read_text(encoding="utf-8"),
            ".".join(("labledger", *path.relative_to(PACKAGE).parent.parts)),
        )
    ]


def edge_files() -> list[Path]:
    return sorted(p for edge in EDGES for p in (PACKAGE / edge).rglob("*.py"))


def test_http_and_cli_never_import_storage() -> None:
    """http/ and cli/ reach the database only through labledger.compose, never storage."""
    assert edge_files(), "no http/ or cli/ modules found"
    assert storage_imports(edge_files()) == []


def test_the_import_walk_sees_every_spelling_of_storage() -> None:
    """The walk catches absolute, package-name, nested and relative imports of storage."""
    spellings = [
        "import labledger.storage.engine",
        "from labledger import storage",
        "from labledger.storage.sql_store import SqlStore",
        "def f():\n    from ..storage import migrate",
        "if TYPE_CHECKING:\n    from labledger.storage.rows import AttemptRow",
    ]
    assert [bool(storage_lines(s, "labledger.cli")) for s in spellings] == [True] * 5
    assert storage_lines("from labledger.compose import SqlStore", "labledger.cli") == []


def exception_classes_outside_errors() -> list[str]:
    """Public exception classes defined anywhere in src but core/errors.py (by their bases,
    followed through the classes labledger defines)."""
    known = {name for name in dir(builtins) if name.endswith(("Error", "Exception"))}
    classes = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                bases = {ast.unparse(b).rpartition(".")[2] for b in node.bases}
                classes.append((path.relative_to(PACKAGE).as_posix(), node.name, bases))
    grew = True
    while grew:
        size = len(known)
        known |= {name for _, name, bases in classes if bases & known}
        grew = len(known) > size
    return [
        f"{path}: {name}"
        for path, name, bases in classes
        if bases & known and path != "core/errors.py" and not name.startswith("_")
    ]


def test_every_error_type_lives_in_core_errors() -> None:
    """One error hierarchy in one module: no public exception class is defined elsewhere."""
    assert exception_classes_outside_errors() == []


RAISED: list[Exception] = []  # what the `boom` verb raises next


@click.command("boom")
def boom() -> None:
    raise RAISED.pop()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.ConfigError("LABLEDGER_X is not set"), EXIT_USAGE),
        (errors.FileRefused("x.json is missing"), EXIT_USAGE),
        (errors.MalformedReceipt("not a receipt"), EXIT_USAGE),
        (errors.NotFound("session", 7), EXIT_LEDGER_ERROR),
        (errors.RetentionRefused("nothing archived"), EXIT_LEDGER_ERROR),
        (errors.NotYetLogged("attempt", 3), EXIT_LEDGER_ERROR),
        (errors.GitHubUnavailable("GET /app/hook: refused"), EXIT_LEDGER_ERROR),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v),
)
def test_the_cli_answers_each_error_kind_in_one_line_with_its_exit_code(
    error: Exception, code: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI's one exit-code map turns each kind of error into one line and its status."""
    monkeypatch.setitem(VERBS, "boom", (f"{__name__}:boom", "raises"))
    RAISED.append(error)
    assert main(["boom"]) == code
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and str(error) in lines[0]
