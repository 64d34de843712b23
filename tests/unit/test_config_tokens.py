"""LABLEDGER_API_TOKENS and subscriber secrets: what start-up refuses and how tokens are named."""

from __future__ import annotations

import base64

import pytest

from labledger.cli import main
from labledger.config import Settings
from labledger.core.errors import ConfigError

LONG = "0123456789abcdef0123456789abcdef"  # 32 characters, the shortest token accepted


def _tokens(text: str) -> list[tuple[str, str, str]]:
    settings = Settings.from_env({"LABLEDGER_API_TOKENS": text})
    return [(t.name, t.scope, t.secret.get_secret_value()) for t in settings.api_tokens]


def test_named_scoped_and_bare_tokens_are_parsed_and_named() -> None:
    """`name:scope:token` keeps its name; `scope:token` and a bare token are named by place."""
    text = f"ci:grader:{LONG}a, read:{LONG}b, {LONG}c"
    assert _tokens(text) == [
        ("ci", "grader", f"{LONG}a"),
        ("read-2", "read", f"{LONG}b"),
        ("admin-3", "admin", f"{LONG}c"),
    ]
    settings = Settings.from_env({"LABLEDGER_API_TOKENS": text})
    assert settings.token_scopes() == [
        ("grader", f"{LONG}a"),
        ("read", f"{LONG}b"),
        ("admin", f"{LONG}c"),
    ]


@pytest.mark.parametrize("entry", [f"raed:{LONG}", f"ci:Admin:{LONG}", f"ci:root:{LONG}"])
def test_misspelled_token_scope_is_refused_at_start(entry: str) -> None:
    """A scope that is not read, grader or admin is refused, never read as an admin token."""
    with pytest.raises(ConfigError, match=r"LABLEDGER_API_TOKENS: .*scope"):
        Settings.from_env({"LABLEDGER_API_TOKENS": entry})


@pytest.mark.parametrize("entry", ["dev-token", f"read:{LONG[:-1]}", f"ci:admin:{LONG[:31]}"])
def test_short_token_is_refused_at_start(entry: str) -> None:
    """A token under 32 characters is refused with a hint on making a long one."""
    with pytest.raises(ConfigError, match=r"LABLEDGER_API_TOKENS: .*at least 32.*openssl"):
        Settings.from_env({"LABLEDGER_API_TOKENS": entry})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f"a:read:{LONG}1,a:admin:{LONG}2", "same name"),
        (f"read:{LONG},admin:{LONG}", "listed twice"),
        (f"a:b:read:{LONG}", "has no colon"),
        (f"bad name:read:{LONG}", "token name"),
    ],
)
def test_ambiguous_token_entries_are_refused_at_start(text: str, problem: str) -> None:
    """Duplicate names or tokens, colons in tokens and odd names are refused, not guessed at."""
    with pytest.raises(ConfigError, match=problem):
        Settings.from_env({"LABLEDGER_API_TOKENS": text})


def test_misspelled_token_scope_stops_the_cli_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`labledger serve` with a misspelled scope exits 2 with one line naming the setting."""
    monkeypatch.setenv("LABLEDGER_API_TOKENS", f"raed:{LONG}")
    assert main(["serve"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "LABLEDGER_API_TOKENS" in err
    assert LONG not in err


def test_short_standard_webhooks_secret_is_refused_at_start() -> None:
    """A subscriber secret under the Standard Webhooks minimum of 24 bytes is refused."""
    short = "whsec_" + base64.b64encode(b"x" * 23).decode()
    enough = "whsec_" + base64.b64encode(b"x" * 24).decode()
    with pytest.raises(ConfigError, match=r"LABLEDGER_SUBSCRIBERS: .*at least 24 bytes"):
        Settings.from_env({"LABLEDGER_SUBSCRIBERS": f"p=https://p.example/h|{short}"})
    settings = Settings.from_env({"LABLEDGER_SUBSCRIBERS": f"p=https://p.example/h|{enough}"})
    assert settings.subscriber_names() == ("p",)
