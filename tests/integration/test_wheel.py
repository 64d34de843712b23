"""The built wheel installs alone: `labledger` runs with the runtime dependencies only."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NEWEST_PYTHON = "3.13"  # the newest that requires-python and the classifiers promise
DEV_TOOLS = ("pytest", "ruff", "mypy", "hypothesis", "schemathesis", "matplotlib", "playwright")


def _uv(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not on PATH; `make setup` installs it")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "UV_PROJECT"))}
    return subprocess.run([uv, *args], cwd=cwd, env=env, capture_output=True, text=True)


def _interpreter(version: str) -> str:
    """uv's Python of that version, or pyenv's where pyenv's shims do not resolve it."""
    found = _uv("python", "find", version)
    if found.returncode == 0:
        return found.stdout.strip()
    pyenv = shutil.which("pyenv")
    root = subprocess.run([pyenv, "root"], capture_output=True, text=True) if pyenv else None
    where = Path(root.stdout.strip()) if root and root.returncode == 0 else None
    candidates = sorted(where.glob(f"versions/{version}*/bin/python{version}")) if where else []
    if not candidates:
        pytest.fail(f"no Python {version}: install it (`uv python install {version}`)")
    return str(candidates[-1])


def _pypi_reachable() -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=5):
            return True
    except OSError:
        return False


def _install(python: Path, *requirements: str) -> None:
    """From uv's cache when it holds everything, else from PyPI; skip only with neither."""
    args = ("pip", "install", "--python", str(python), *requirements)
    if _uv(*args, "--offline").returncode == 0:
        return
    if not _pypi_reachable():
        pytest.skip("no network and the packages are not in uv's cache")
    done = _uv(*args)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.package
def test_wheel_installs_with_runtime_dependencies_only(tmp_path: Path) -> None:
    """A wheel from `uv build` installs into a fresh venv on the newest supported Python;
    `labledger` works there and no test or lint tool came with it."""
    built = _uv("build", "--wheel", "--out-dir", str(tmp_path / "dist"))
    if built.returncode != 0 and not _pypi_reachable():
        pytest.skip("no network to fetch the build backend")
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("labledger-*.whl")
    pins = tmp_path / "pins.txt"
    exported = _uv(
        "export", "--frozen", "--no-default-groups", "--no-emit-project", "--no-hashes",
        "--output-file", str(pins),
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert (
        _uv("venv", "--python", _interpreter(NEWEST_PYTHON), str(tmp_path / "venv")).returncode == 0
    )
    bin_dir = tmp_path / "venv" / "bin"
    _install(bin_dir / "python", str(wheel), "--constraints", str(pins))

    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}
    env["LABLEDGER_DATABASE_URL"] = f"sqlite:///{tmp_path / 'ledger.db'}"
    for argv in (["--version"], ["migrate"], ["sessions", "list"]):
        ran = subprocess.run(
            [bin_dir / "labledger", *argv], env=env, capture_output=True, text=True
        )
        assert ran.returncode == 0, ran.stderr
    probe = "import importlib.util as u, sys; print(*[m for m in sys.argv[1:] if u.find_spec(m)])"
    found = subprocess.run(
        [bin_dir / "python", "-c", probe, *DEV_TOOLS], capture_output=True, text=True
    )
    assert found.returncode == 0 and found.stdout.split() == []
