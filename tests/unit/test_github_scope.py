"""Scoped webhook secrets: the setting's format and which secret vouches for what."""

from __future__ import annotations

import pytest

from labledger.config import Settings
from labledger.core.errors import ConfigError, SignatureRejected
from labledger.forges.github import parse_github_push
from labledger.forges.github_scope import ScopedSecret, signing_secret
from tests.support import body_of, commit, push_payload, sign

BODY = body_of(push_payload([commit()]))


def test_scoped_secrets_setting_is_parsed_with_the_unscoped_secret_last() -> None:
    """Each entry names its scope; the single unscoped secret still works beside them."""
    settings = Settings.from_env(
        {
            "LABLEDGER_GITHUB_WEBHOOK_SECRETS": "owner:7=a=b, installation:9=c",
            "LABLEDGER_GITHUB_WEBHOOK_SECRET": "plain",
        }
    )
    found = [(s.kind, s.scope_id, s.secret) for s in settings.github_secrets()]
    assert found == [("owner", 7, b"a=b"), ("installation", 9, b"c"), ("any", None, b"plain")]


@pytest.mark.parametrize(
    "entry",
    ["owner:x=hunter2", "owner:7", "org:7=hunter2", "owner:7=", "owner:-1=hunter2", "owner:٣=s"],
)
def test_a_malformed_scoped_secret_is_a_one_line_config_error(entry: str) -> None:
    """A bad entry names the setting and the expected form, and never echoes the secret."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"LABLEDGER_GITHUB_WEBHOOK_SECRETS": f"owner:1=hunter1,{entry}"})
    message = str(caught.value)
    assert "LABLEDGER_GITHUB_WEBHOOK_SECRETS" in message and "entry 2" in message
    assert "hunter" not in message and "\n" not in message


def test_serving_accepts_scoped_secrets_alone() -> None:
    """`serve` needs a secret of either kind, not necessarily the unscoped one."""
    settings = Settings.from_env(
        {"LABLEDGER_GITHUB_WEBHOOK_SECRETS": "owner:7=s", "LABLEDGER_API_TOKENS": "t" * 32}
    )
    assert settings.github_secrets()
    with pytest.raises(ConfigError, match="signing key"):
        settings.require_serving()  # gets past the secrets, stops at the missing key


def test_the_secret_that_signed_is_the_one_whose_scope_is_checked() -> None:
    """Of several secrets, the one whose HMAC matches decides the scope."""
    secrets = (ScopedSecret(b"one", "owner", 1), ScopedSecret(b"two", "owner", 21031067))
    signer = signing_secret(secrets, BODY, sign(BODY, "two"))
    assert signer.scope_id == 21031067
    assert parse_github_push(BODY, signer).repository_id > 0
    with pytest.raises(SignatureRejected, match="owner is 21031067"):
        parse_github_push(BODY, signing_secret(secrets, BODY, sign(BODY, "one")))
    with pytest.raises(SignatureRejected, match="does not match"):
        signing_secret(secrets, BODY, sign(BODY, "three"))
