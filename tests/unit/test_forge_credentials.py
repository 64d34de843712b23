"""Token and signature attacks on the GitLab and Gitea/Forgejo adapters, and their settings."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from labledger.config import Settings
from labledger.core.errors import ConfigError, MalformedPayload, SignatureRejected
from labledger.forges import gitea, gitlab
from tests.forge_support import (
    GITEA_OWNER_ID,
    GITEA_REPO_ID,
    GITEA_SECRET,
    GITLAB_PROJECT_ID,
    GITLAB_SIGNING,
    GITLAB_TOKEN,
    gitea_commit,
    gitea_headers,
    gitea_payload,
    gitlab_commit,
    gitlab_creds,
    gitlab_headers,
    gitlab_payload,
)

BODY = json.dumps(gitlab_payload([gitlab_commit(1)])).encode()
GITEA_BODY = json.dumps(gitea_payload([gitea_commit(1)])).encode()
OTHER_SIGNING = "whsec_" + "QUJD" * 11


def _gitlab_grant(creds: gitlab.Credentials, **options: object) -> gitlab.Grant:
    return gitlab.authenticate(creds, gitlab_headers(BODY, **options), BODY)  # type: ignore[arg-type]


def test_gitlab_with_nothing_configured_refuses_even_a_token() -> None:
    """Fail closed: no configured token means every delivery is refused."""
    with pytest.raises(SignatureRejected, match="no GitLab webhook token"):
        _gitlab_grant(gitlab.Credentials())


@pytest.mark.parametrize("token", [None, "", "wrong", GITLAB_TOKEN + " ", GITLAB_TOKEN.upper()])
def test_gitlab_wrong_or_missing_token_is_refused(token: str | None) -> None:
    """Only the exact configured token authenticates."""
    with pytest.raises(SignatureRejected):
        _gitlab_grant(gitlab_creds(), token=token)


def test_gitlab_signing_token_configured_makes_the_signature_required() -> None:
    """With a signing token set, a right plain token without a signature is refused."""
    with pytest.raises(SignatureRejected, match="requires a webhook-signature"):
        _gitlab_grant(gitlab_creds(signing=GITLAB_SIGNING))


def test_gitlab_signature_made_with_another_signing_token_is_refused() -> None:
    """A signature by a key that is not configured does not authenticate."""
    with pytest.raises(SignatureRejected):
        _gitlab_grant(gitlab_creds(signing=GITLAB_SIGNING), signing=OTHER_SIGNING)


def test_gitlab_replayed_signature_outside_the_tolerance_is_refused() -> None:
    """A captured, validly signed delivery replayed an hour later is refused as a replay."""
    with pytest.raises(SignatureRejected, match="tolerance"):
        _gitlab_grant(
            gitlab_creds(signing=GITLAB_SIGNING),
            signing=GITLAB_SIGNING,
            timestamp=int(time.time()) - 3600,
        )


def test_gitlab_signature_with_a_future_timestamp_is_refused() -> None:
    """A timestamp far ahead cannot stretch the replay window."""
    with pytest.raises(SignatureRejected, match="tolerance"):
        _gitlab_grant(
            gitlab_creds(signing=GITLAB_SIGNING),
            signing=GITLAB_SIGNING,
            timestamp=int(time.time()) + 3600,
        )


def test_gitlab_signature_over_another_body_is_refused() -> None:
    """The signature covers the body: a changed body with the old headers is refused."""
    creds = gitlab_creds(signing=GITLAB_SIGNING)
    headers = gitlab_headers(BODY, signing=GITLAB_SIGNING)
    tampered = BODY.replace(b"lab step", b"lab stap")
    with pytest.raises(SignatureRejected):
        gitlab.authenticate(creds, headers, tampered)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("webhook-signature", "v1"),
        ("webhook-signature", "v1,@@@"),
        ("webhook-signature", "v2,AAAA"),
        ("webhook-timestamp", "nan"),
        ("webhook-timestamp", "1e9"),
        ("webhook-id", "x\x00y"),
    ],
)
def test_gitlab_malformed_signature_headers_are_refused_not_crashed(name: str, value: str) -> None:
    """Odd signature headers answer 401 with a reason, never an exception from the library."""
    headers = gitlab_headers(BODY, signing=GITLAB_SIGNING) | {name: value}
    with pytest.raises(SignatureRejected):
        gitlab.authenticate(gitlab_creds(signing=GITLAB_SIGNING), headers, BODY)


def test_gitlab_signed_delivery_is_identified_by_its_signed_webhook_id() -> None:
    """Signed: the event id is the signed webhook-id; another Idempotency-Key is refused."""
    creds = gitlab_creds(signing=GITLAB_SIGNING)
    headers = gitlab_headers(BODY, signing=GITLAB_SIGNING)
    grant = gitlab.authenticate(creds, headers, BODY)
    assert gitlab.read_envelope(headers, BODY, grant).delivery_id == headers["webhook-id"]
    with pytest.raises(MalformedPayload, match="differs from the signed webhook-id"):
        gitlab.read_envelope(headers | {"idempotency-key": "swapped"}, BODY, grant)


def test_gitlab_signing_token_alone_authenticates_a_signed_delivery() -> None:
    """A hook with only a signing token needs no plain token."""
    grant = _gitlab_grant(
        gitlab_creds(tokens=None, signing=GITLAB_SIGNING), token=None, signing=GITLAB_SIGNING
    )
    assert grant.forge == "gitlab"


def test_gitlab_without_idempotency_key_is_identified_by_its_body() -> None:
    """GitLab before 17.4: a retry resends the same body, so its hash names the event."""
    headers = gitlab_headers(BODY, key=None)
    grant = gitlab.authenticate(gitlab_creds(), headers, BODY)
    first = gitlab.read_envelope(headers, BODY, grant).delivery_id
    again = gitlab.read_envelope(gitlab_headers(BODY, key=None), BODY, grant).delivery_id
    assert first == again and first.startswith("sha256:")


def test_gitlab_token_of_a_named_instance_names_the_forge() -> None:
    """The instance comes from the token that matched, never from a header."""
    creds = gitlab_creds(tokens=f"main-token, uni2@*={GITLAB_TOKEN}")
    headers = gitlab_headers(BODY) | {"x-gitlab-instance": "https://gitlab.com"}
    assert gitlab.authenticate(creds, headers, BODY).forge == "gitlab:uni2"


def test_gitlab_token_scoped_to_another_project_is_refused_for_this_one() -> None:
    """A token leaked from one project's hook cannot record pushes to another project."""
    creds = gitlab_creds(tokens=f"project:{GITLAB_PROJECT_ID + 1}={GITLAB_TOKEN}")
    push = gitlab.parse_gitlab_push(BODY, "push")
    with pytest.raises(SignatureRejected, match="does not cover"):
        gitlab.authenticate(creds, gitlab_headers(BODY), BODY).check_scope(push)


def test_gitlab_group_scope_covers_subgroups_but_not_lookalike_groups() -> None:
    """`group:course-2026` covers course-2026/x/y, never course-2026-evil/y."""
    creds = gitlab_creds(tokens=f"group:course-2026={GITLAB_TOKEN}")
    grant = gitlab.authenticate(creds, gitlab_headers(BODY), BODY)
    inside = json.dumps(gitlab_payload([gitlab_commit(1)], path="course-2026/sub/lab")).encode()
    grant.check_scope(gitlab.parse_gitlab_push(inside, "push"))
    outside = json.dumps(gitlab_payload([gitlab_commit(1)], path="course-2026-evil/lab")).encode()
    with pytest.raises(SignatureRejected):
        grant.check_scope(gitlab.parse_gitlab_push(outside, "push"))


def test_gitea_with_no_secret_configured_refuses_everything() -> None:
    """Fail closed with nothing configured."""
    with pytest.raises(SignatureRejected, match="no Gitea webhook secret"):
        gitea.authenticate((), gitea_headers(GITEA_BODY), GITEA_BODY)


@pytest.mark.parametrize("family", ["gitea", "forgejo"])
def test_gitea_and_forgejo_signatures_with_a_wrong_secret_are_refused(family: str) -> None:
    """A body signed with another secret is refused under either header family."""
    headers = gitea_headers(GITEA_BODY, secret="not-ours", family=family)
    with pytest.raises(SignatureRejected, match="does not match"):
        gitea.authenticate(gitea.parse_secrets(GITEA_SECRET), headers, GITEA_BODY)


@pytest.mark.parametrize("garbage", ["", "zz", "sha256=" + "0" * 64, "0" * 64])
def test_gitea_missing_or_garbage_signature_is_refused(garbage: str) -> None:
    """Without a valid HMAC in any signature header, nothing is accepted."""
    headers = {k: v for k, v in gitea_headers(GITEA_BODY).items() if "signature" not in k} | {
        "x-gitea-signature": garbage
    }
    with pytest.raises(SignatureRejected):
        gitea.authenticate(gitea.parse_secrets(GITEA_SECRET), headers, GITEA_BODY)


def test_gitea_forgejo_delivery_headers_that_disagree_are_refused() -> None:
    """X-Forgejo-Delivery and X-Gitea-Delivery name one event: two values are malformed."""
    headers = gitea_headers(GITEA_BODY, family="forgejo") | {"x-gitea-delivery": "other"}
    with pytest.raises(MalformedPayload, match="differ"):
        gitea.read_envelope(headers)


def test_gitea_secret_scoped_to_another_owner_is_refused_for_this_repository() -> None:
    """An organisation's secret cannot record pushes to another organisation's repositories."""
    secrets = gitea.parse_secrets(f"owner:{GITEA_OWNER_ID + 1}={GITEA_SECRET}")
    grant = gitea.authenticate(secrets, gitea_headers(GITEA_BODY), GITEA_BODY)
    parsed = gitea.parse_gitea_push(GITEA_BODY)
    with pytest.raises(SignatureRejected, match=f"repository {GITEA_REPO_ID}"):
        grant.check_scope(parsed.push, parsed.owner_id)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("LABLEDGER_GITLAB_WEBHOOK_TOKEN", "repo:5=x", "unknown scope"),
        ("LABLEDGER_GITLAB_WEBHOOK_TOKEN", "project:abc=x", "not a valid project"),
        ("LABLEDGER_GITLAB_WEBHOOK_TOKEN", "university-two@*=x", "instance name"),
        ("LABLEDGER_GITLAB_WEBHOOK_TOKEN", "a@*=same, b@*=same", "two instances"),
        ("LABLEDGER_GITLAB_SIGNING_TOKEN", "not-whsec", "whsec_"),
        ("LABLEDGER_GITEA_WEBHOOK_SECRET", "group:x=y", "unknown scope"),
    ],
)
def test_bad_forge_settings_are_refused_with_the_setting_named(
    name: str, value: str, problem: str
) -> None:
    """A mistyped scoped secret stops start-up with one line naming the setting."""
    with pytest.raises(ConfigError, match=problem) as raised:
        Settings.from_env({name: value})
    assert name in str(raised.value) and "\n" not in str(raised.value)


def test_serve_starts_with_only_a_gitlab_token(tmp_path: Path) -> None:
    """A GitLab-only university needs no GitHub secret to serve."""
    settings = Settings.from_env(
        {
            "LABLEDGER_GITLAB_WEBHOOK_TOKEN": GITLAB_TOKEN,
            "LABLEDGER_API_TOKENS": "t" * 32,
            "LABLEDGER_SIGNING_KEY_FILE": str(tmp_path / "absent.key"),
        }
    )
    with pytest.raises(ConfigError, match="signing key"):
        settings.require_serving()  # gets past the webhook secrets to the next requirement
