"""The house's walls: which package may import which, checked on the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

import labledger

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
