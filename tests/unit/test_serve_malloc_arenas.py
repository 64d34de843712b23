"""`serve --malloc-arenas`: glibc's arenas capped before the request threads start."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from labledger.cli.server_verbs import cap_malloc_arenas


def test_malloc_arenas_are_capped_unless_the_operator_chose(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An operator's MALLOC_ARENA_MAX stands; without one, the cap applies here and to workers."""
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert cap_malloc_arenas(2) is False
    assert os.environ["MALLOC_ARENA_MAX"] == "4"
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    libc_is_glibc = "libc.so.6" in Path("/proc/self/maps").read_text()
    assert cap_malloc_arenas(2) is libc_is_glibc
    assert os.environ["MALLOC_ARENA_MAX"] == "2"  # what `--workers` processes start with
