"""The GitHub double, shared by the reconcile and discovery tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Ledger
from tests.github_double import TOKEN, GitHubDouble, serve
from tests.integration.servers import free_port, write_signing_key

HOOK = "repos/octo/lab/hooks/4242"


@pytest.fixture
def github(
    monkeypatch: pytest.MonkeyPatch, ledger: Ledger, tmp_path: Path
) -> Iterator[GitHubDouble]:
    """The double, running, with labledger's CLI pointed at it and at the ledger."""
    double = GitHubDouble(target=f"http://127.0.0.1:{free_port()}/webhooks/github")
    double.hooks[HOOK] = []
    server, base = serve(double)
    for name, value in {
        "DATABASE_URL": ledger.url,
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_API_URL": base,
        "GITHUB_HOOKS": HOOK,
        "SIGNING_KEY_FILE": str(write_signing_key(tmp_path)),
    }.items():
        monkeypatch.setenv(f"LABLEDGER_{name}", value)
    yield double
    server.shutdown()
    server.server_close()
