"""Settings of the GitHub API side (reconcile, discovery): refused in one line when wrong."""

from __future__ import annotations

import os

import pytest

from labledger.cli import main
from labledger.config import Settings
from labledger.core.errors import ConfigError


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LABLEDGER_GITHUB_HOOKS", "repos/octo/lab"),
        ("LABLEDGER_GITHUB_HOOKS", "repos/octo/lab/hooks/1/../../../orgs/x/hooks/2"),
        ("LABLEDGER_GITHUB_HOOKS", "repos/../../hooks/1"),
        ("LABLEDGER_SESSION_DISCOVERY", "cs101-lab1-*"),
        ("LABLEDGER_RECONCILE_INTERVAL_SECONDS", "0"),
    ],
)
def test_a_malformed_github_setting_is_refused_naming_it(name: str, value: str) -> None:
    """A hook path, discovery entry or interval that cannot work stops the program, named."""
    with pytest.raises(ConfigError, match=rf"^{name}: "):
        Settings.from_env({name: value})


def test_configured_hooks_and_discovery_entries_are_read_as_lists() -> None:
    """Comma-separated entries become one setting each, spaces trimmed."""
    settings = Settings.from_env(
        {
            "LABLEDGER_GITHUB_HOOKS": "repos/octo/lab/hooks/42, orgs/cs101/hooks/7,app",
            "LABLEDGER_SESSION_DISCOVERY": "cs101/lab1-*=lab1",
        }
    )
    assert settings.github_hooks == ("repos/octo/lab/hooks/42", "orgs/cs101/hooks/7", "app")
    assert settings.session_discovery == ("cs101/lab1-*=lab1",)


def test_reconcile_without_a_token_says_which_setting_is_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """No LABLEDGER_GITHUB_TOKEN: a configuration error naming it, before any request."""
    for key in [k for k in os.environ if k.startswith("LABLEDGER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", f"sqlite:///{tmp_path}/l.db")
    monkeypatch.setenv("LABLEDGER_GITHUB_HOOKS", "repos/octo/lab/hooks/42")
    assert main(["migrate"]) == 0
    assert main(["reconcile"]) == 2
    assert "LABLEDGER_GITHUB_TOKEN is not set" in capsys.readouterr().err


def test_a_reconcile_schedule_without_a_token_is_refused() -> None:
    """`serve` cannot be configured to reconcile on a schedule it could never run."""
    with pytest.raises(ConfigError, match="needs LABLEDGER_GITHUB_TOKEN"):
        Settings.from_env(
            {
                "LABLEDGER_RECONCILE_INTERVAL_SECONDS": "900",
                "LABLEDGER_GITHUB_HOOKS": "orgs/cs101/hooks/7",
            }
        )
