"""`labledger reconcile` against a local double of GitHub, on both databases (issue 24)."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from labledger.cli import main
from labledger.forges.github_api import Backoff, GitHubClient
from labledger.forges.github_app import REFRESH_MARGIN
from labledger.storage import migrate
from labledger.storage.engine import make_engine
from labledger.storage.sql_store import SqlStore
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.github_double import (
    TOKEN,
    Answer,
    GitHubDouble,
    broken,
    primary_rate_limited,
    rate_limited,
)
from tests.integration.conftest import HOOK
from tests.integration.servers import running_servers
from tests.support import body_of, commit, push_payload, session_spec, sha

pytestmark = pytest.mark.slow


def chain_of_pushes(count: int) -> list[bytes]:
    """`count` pushes to main, each starting where the one before ended, a minute apart."""
    bodies, before = [], sha("template")
    for n in range(count):
        work = [commit(), commit()]
        payload = push_payload(work, before=before, pushed_at=1_763_990_000 + 60 * n)
        bodies.append(body_of(payload))
        before = work[-1]["id"]
    return bodies


def attempts_of(store: SqlStore) -> list[tuple[Any, ...]]:
    session = store.list_sessions(limit=10)[0]
    return [
        (a.commit.sha, a.branch, a.pushed_at, a.trusted_time, a.delivery_id)
        for a in store.all_session_attempts(session.id)
    ]


def test_pushes_sent_while_ledger_was_down_are_restored_by_reconcile(
    github: GitHubDouble, ledger: Ledger, tmp_path: Path
) -> None:
    """Pushes GitHub failed to deliver while labledger was down are redelivered by reconcile,
    leaving the ledger as a run where nothing failed would: same attempts, same trusted times."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    sent = [github.deliver(HOOK, body) for body in chain_of_pushes(3)]
    assert {d.status_code for d in sent} == {0}  # labledger was down: nothing answered

    with running_servers(ledger.url, 1, tmp_path) as (url,):
        github.target = f"{url}/webhooks/github"  # same hook, the restarted server's port
        assert main(["reconcile"]) == 0
        assert main(["reconcile"]) == 0  # a second run finds nothing left to ask for
    redelivered = [r for r in github.requests if r[0] == "POST"]
    assert len(redelivered) == 3

    calm = make_engine(f"sqlite:///{tmp_path / 'calm.db'}")
    migrate.upgrade(calm)
    baseline = SqlStore(calm)
    baseline.create_session(session_spec(), "test", datetime.now(UTC))
    for d in sent:
        deliver(baseline, d.body, delivery_id=d.guid, hook_id="4242")
    assert attempts_of(ledger.store) == attempts_of(baseline)
    assert ledger.store.push_chain_gaps() == []
    assert main(["integrate"]) == 0
    assert main(["verify"]) == 0
    calm.dispose()


def test_reconcile_backs_off_on_rate_limit(
    github: GitHubDouble, ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """A primary rate limit (403, remaining 0), a secondary one (429, retry-after) and a 502
    are waited out, not fatal."""
    github.deliver(HOOK, chain_of_pushes(1)[0])
    github.scripted += [
        (f"/{HOOK}/deliveries", primary_rate_limited(1)),
        (f"/{HOOK}/deliveries", rate_limited(1)),
        (f"/{HOOK}", broken(502)),
    ]
    assert main(["reconcile"]) == 0
    out = capsys.readouterr()
    assert out.err.count("GitHub asks to wait: retrying in") == 3
    assert "requested 1 redeliveries" in out.out
    listed = [r for r in github.requests if r == ("GET", f"/{HOOK}/deliveries")]
    assert len(listed) == 4  # two rate limits, the 502, then the list


def test_reconcile_exits_nonzero_when_a_hook_cannot_be_read(
    github: GitHubDouble, ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hook GitHub does not know (404) is reported and fails the run; the others still run."""
    made = github.deliver(HOOK, chain_of_pushes(1)[0])
    monkeypatch.setenv("LABLEDGER_GITHUB_HOOKS", f"repos/octo/gone/hooks/1,{HOOK}")
    assert main(["reconcile"]) == 1
    assert ("POST", f"/{HOOK}/deliveries/{made.id}/attempts") in github.requests


def test_reconcile_exits_nonzero_when_redelivery_fails(
    github: GitHubDouble, ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """A redelivery GitHub refuses is reported as still missing, the run exits non-zero, and
    the position stays put so the next run asks again."""
    made = github.deliver(HOOK, chain_of_pushes(1)[0])
    attempts_path = f"/{HOOK}/deliveries/{made.id}/attempts"
    github.scripted.append((attempts_path, broken(422)))
    assert main(["reconcile"]) != 0
    assert f"still missing 1: {made.guid}" in capsys.readouterr().out
    assert main(["reconcile"]) == 0  # not skipped: the position did not move past it
    assert [r for r in github.requests if r[0] == "POST"] == [("POST", attempts_path)] * 2


def test_serve_reconciles_on_its_schedule(
    github: GitHubDouble, ledger: Ledger, tmp_path: Path
) -> None:
    """With LABLEDGER_RECONCILE_INTERVAL_SECONDS set, `serve` itself restores missed pushes."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    sent = [github.deliver(HOOK, body) for body in chain_of_pushes(2)]
    settings = {
        f"LABLEDGER_{k}": os.environ[f"LABLEDGER_{k}"]
        for k in ("GITHUB_TOKEN", "GITHUB_API_URL", "GITHUB_HOOKS")
    }
    with running_servers(
        ledger.url, 1, tmp_path, LABLEDGER_RECONCILE_INTERVAL_SECONDS="0.5", **settings
    ) as (url,):
        github.target = f"{url}/webhooks/github"
        deadline = time.monotonic() + 30
        while len(attempts_of(ledger.store)) < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
    assert {a[-1] for a in attempts_of(ledger.store)} == {d.guid for d in sent}


def test_reconcile_follows_cursor_pages_and_resumes_from_its_position(
    github: GitHubDouble, ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deliveries over several cursor pages are all read; only the one the ledger lacks is
    redelivered, and the next run reads only what GitHub delivered since."""
    sent = [github.deliver(HOOK, body) for body in chain_of_pushes(150)]
    for d in sent[1:]:  # recorded, though GitHub saw the answers fail (e.g. over its 10 s)
        deliver(ledger.store, d.body, delivery_id=d.guid, hook_id="4242")
    assert main(["reconcile"]) == 0
    assert "saw 150 deliveries (150 push), requested 1 redeliveries" in capsys.readouterr().out
    posts = [r for r in github.requests if r[0] == "POST"]
    assert posts == [("POST", f"/{HOOK}/deliveries/{sent[0].id}/attempts")]
    assert github.requests.count(("GET", f"/{HOOK}/deliveries")) == 2  # two cursor pages
    github.requests.clear()
    assert main(["reconcile"]) == 0
    assert "saw 1 deliveries (1 push), requested 1 redeliveries" in capsys.readouterr().out
    assert github.requests.count(("GET", f"/{HOOK}/deliveries")) == 1


def _app_key(tmp_path: Path, github: GitHubDouble, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A GitHub App whose public key the double holds, installed on the `octo` account."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = tmp_path / "app.pem"
    path.write_bytes(pem)
    github.app_id, github.installations = "31337", {"octo": 4711}
    github.app_public_key = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    monkeypatch.delenv("LABLEDGER_GITHUB_TOKEN")
    monkeypatch.setenv("LABLEDGER_GITHUB_APP_ID", github.app_id)
    monkeypatch.setenv("LABLEDGER_GITHUB_APP_PRIVATE_KEY_FILE", str(path))
    monkeypatch.setenv("LABLEDGER_GITHUB_HOOKS", f"{HOOK},app")
    github.hooks["app/hook"] = []
    return path


def test_reconcile_as_a_github_app(
    github: GitHubDouble, ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a GitHub App, the App's own hook is read with its JWT and a repository's hook with
    one installation token, found through the repository's installation and reused."""
    _app_key(tmp_path, github, monkeypatch)
    github.deliver(HOOK, chain_of_pushes(1)[0])
    github.deliver("app/hook", chain_of_pushes(1)[0])
    assert main(["reconcile"]) == 0
    assert github.requests.count(("GET", "/repos/octo/lab/installation")) == 1
    assert github.requests.count(("POST", "/app/installations/4711/access_tokens")) == 1
    assert ("GET", "/app/hook/deliveries") in github.requests
    assert len([r for r in github.requests if r[1].endswith("/attempts")]) == 2
    assert len(github.issued) == 1


def test_github_app_installation_token_is_renewed_before_it_expires(
    github: GitHubDouble, ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installation token close to its expiry is never presented: a new one is made."""
    _app_key(tmp_path, github, monkeypatch)
    github.token_lifetime = REFRESH_MARGIN - 1  # every token is already due for renewal
    github.deliver(HOOK, chain_of_pushes(1)[0])
    assert main(["reconcile"]) == 0
    repository_requests = [r for r in github.requests if r[1].startswith(f"/{HOOK}")]
    made = github.requests.count(("POST", "/app/installations/4711/access_tokens"))
    assert made == len(repository_requests) == 2


def test_github_app_with_a_key_github_does_not_hold_is_refused(
    github: GitHubDouble,
    ledger: Ledger,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A JWT signed with another key is refused by GitHub: the run says so and exits 1."""
    path = _app_key(tmp_path, github, monkeypatch)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    assert main(["reconcile"]) == 1
    assert "GitHub answered 401" in capsys.readouterr().out
    assert github.issued == {}


def test_github_identity_settings_are_refused_in_one_line_when_they_do_not_add_up(
    github: GitHubDouble,
    ledger: Ledger,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Half an App (id without key), a token beside an App, or an unreadable key file: one line
    naming the settings, exit 2, nothing asked of GitHub."""
    monkeypatch.setenv("LABLEDGER_GITHUB_APP_ID", "31337")
    assert main(["reconcile"]) == 2
    assert "LABLEDGER_GITHUB_APP_PRIVATE_KEY_FILE go together" in capsys.readouterr().err
    monkeypatch.setenv("LABLEDGER_GITHUB_APP_PRIVATE_KEY_FILE", str(tmp_path / "none.pem"))
    assert main(["reconcile"]) == 2
    assert "not both" in capsys.readouterr().err
    monkeypatch.delenv("LABLEDGER_GITHUB_TOKEN")
    assert main(["reconcile"]) == 2
    err = capsys.readouterr().err
    assert (
        "LABLEDGER_GITHUB_APP_PRIVATE_KEY_FILE: cannot read" in err and len(err.splitlines()) == 1
    )
    assert github.requests == []


def test_secondary_rate_limit_without_retry_after_waits_a_minute(github: GitHubDouble) -> None:
    """A 403 secondary rate limit with neither `retry-after` nor an exhausted quota is waited
    out a minute at least, as GitHub's docs ask, and the request is then made again."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def listed() -> Any:
        async with httpx2.AsyncClient() as client:
            api = GitHubClient(client, TOKEN, github.base, Backoff(), sleep)
            return await api.getitem(f"/{HOOK}/deliveries")

    secondary = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}
    github.scripted.append((f"/{HOOK}/deliveries", Answer(403, secondary)))
    assert asyncio.run(listed()) == []
    assert waits == [60.0]
    assert github.requests.count(("GET", f"/{HOOK}/deliveries")) == 2
