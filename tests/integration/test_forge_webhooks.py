"""GitLab and Gitea/Forgejo deliveries through the real store, on SQLite and PostgreSQL.

Every hostile input either raises one of labledger's 4xx errors with nothing written, or is
recorded exactly, field by field; every attack on identity (another forge, another instance,
another project's token, a replay) writes nothing a session would count.
"""

from __future__ import annotations

import itertools
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text as sql

from labledger.core.errors import (
    BodyTooLarge,
    DeliveryConflict,
    MalformedPayload,
    NotJson,
    SignatureRejected,
)
from labledger.core.model import Identity
from labledger.services.ingest import WebhookAnswer, receive_gitea, receive_gitlab
from labledger.storage.sql_store import SqlStore
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.forge_support import (
    GITEA_OWNER_ID,
    GITEA_REPO_ID,
    GITLAB_PROJECT_ID,
    GITLAB_SIGNING,
    GITLAB_TOKEN,
    deliver_gitea,
    deliver_gitlab,
    gitea_commit,
    gitea_headers,
    gitea_payload,
    gitea_secrets,
    gitlab_commit,
    gitlab_creds,
    gitlab_headers,
    gitlab_payload,
)
from tests.support import FIXTURES, commit, push_payload, session_spec

CLIENT_ERRORS = (MalformedPayload, SignatureRejected, NotJson, BodyTooLarge, DeliveryConflict)
HYPOTHESIS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
OPEN = datetime(2000, 1, 1, tzinfo=UTC)
_ids = itertools.count(7_000_000_001)


def _session(ledger: Ledger, forge: str, repository_id: int, **extra: Any) -> int:
    spec = session_spec(forge=forge, repository_id=repository_id, opens_at=OPEN, due_at=None)
    spec = type(spec)(**{**{f: getattr(spec, f) for f in spec.__slots__}, **extra})
    return ledger.store.create_session(spec, "test", datetime.now(UTC)).id


def _audit_details(ledger: Ledger, delivery_id: str) -> dict[str, Any]:
    with ledger.engine.connect() as conn:
        raw = conn.execute(
            sql("SELECT details FROM audit_events WHERE target_id = :d ORDER BY id"),
            {"d": delivery_id},
        ).scalar_one()
    return raw if isinstance(raw, dict) else json.loads(raw)


def test_gitlab_push_is_recorded_for_a_gitlab_session_with_its_missing_count(
    ledger: Ledger,
) -> None:
    """Two of five commits listed: two attempts, the push marked incomplete, three missing."""
    session_id = _session(ledger, "gitlab", GITLAB_PROJECT_ID)
    payload = gitlab_payload([gitlab_commit(1), gitlab_commit(2)], total=5)
    answer = deliver_gitlab(ledger.store, payload)
    assert (answer.status, len(answer.body["attempt_ids"])) == (202, 2)  # type: ignore[arg-type]
    report = ledger.store.delivery_report("gitlab", str(answer.body["delivery_id"]))
    assert report.push is not None and report.push.forge == "gitlab"
    assert not report.push.commit_list_complete
    assert {a.session_id for a in report.attempts} == {session_id}
    assert _audit_details(ledger, str(answer.body["delivery_id"]))["commits_missing"] == 3


def test_gitlab_retry_with_the_same_idempotency_key_is_a_duplicate_not_restamped(
    ledger: Ledger,
) -> None:
    """A retry answers with the first ids and keeps the first receipt time as trusted time."""
    _session(ledger, "gitlab", GITLAB_PROJECT_ID)
    payload = gitlab_payload([gitlab_commit("retry")])
    first_at = datetime.now(UTC)
    first = deliver_gitlab(ledger.store, payload, key="k-1", received_at=first_at)
    later = deliver_gitlab(
        ledger.store, payload, key="k-1", received_at=first_at + timedelta(days=3)
    )
    assert (later.status, later.body["attempt_ids"]) == (200, first.body["attempt_ids"])
    attempt = ledger.store.get_attempt(first.body["attempt_ids"][0]).attempt  # type: ignore[index]
    assert attempt.trusted_time == first_at and attempt.pushed_at is None


def test_gitlab_idempotency_key_reused_with_another_body_is_a_conflict(ledger: Ledger) -> None:
    """The same key with another body is refused with 409 and writes no ledger row."""
    deliver_gitlab(ledger.store, gitlab_payload([gitlab_commit("a")]), key="k-2")
    before = ledger.store.count_rows()
    with pytest.raises(DeliveryConflict):
        deliver_gitlab(ledger.store, gitlab_payload([gitlab_commit("b")]), key="k-2")
    after = ledger.store.count_rows()
    assert (after["deliveries"], after["pushes"]) == (before["deliveries"], before["pushes"])


def test_gitlab_resend_without_idempotency_key_is_a_duplicate_by_its_body(ledger: Ledger) -> None:
    """GitLab before 17.4: the same body twice is one event."""
    payload = gitlab_payload([gitlab_commit("old-gitlab")])
    first = deliver_gitlab(ledger.store, payload, key=None)
    again = deliver_gitlab(ledger.store, payload, key=None)
    assert (first.status, again.status) == (202, 200)
    assert ledger.store.count_rows()["deliveries"] == 1


def test_same_repository_id_on_another_forge_never_matches_a_session(ledger: Ledger) -> None:
    """GitHub repository 4815 and GitLab project 4815 are different repositories."""
    github_session = _session(ledger, "github", GITLAB_PROJECT_ID)
    gitea_session = _session(ledger, "gitea", GITLAB_PROJECT_ID)
    answer = deliver_gitlab(ledger.store, gitlab_payload([gitlab_commit("x")]))
    assert answer.body["attempt_ids"] == []
    github_push = push_payload([commit("y")], repository_id=GITLAB_PROJECT_ID)
    assert len(deliver(ledger.store, github_push).body["attempt_ids"]) == 1  # type: ignore[arg-type]
    sessions = {a.session_id for a in ledger.store.all_session_attempts(github_session)}
    assert sessions == {github_session}
    assert ledger.store.all_session_attempts(gitea_session) == []


def test_project_42_on_two_gitlab_instances_feeds_only_its_own_session(ledger: Ledger) -> None:
    """The instance is the token's: uni2's push never lands in the default instance's session."""
    default = _session(ledger, "gitlab", 42)
    uni2 = _session(ledger, "gitlab:uni2", 42, subject_id="student-2")
    creds = gitlab_creds(tokens=f"{GITLAB_TOKEN}, uni2@*=uni2-token")
    payload = gitlab_payload([gitlab_commit("uni2")], project_id=42)
    answer = deliver_gitlab(ledger.store, payload, creds=creds, token="uni2-token")
    assert ledger.store.find_delivery("gitlab:uni2", str(answer.body["delivery_id"])) is not None
    assert [a.session_id for a in ledger.store.all_session_attempts(uni2)] == [uni2]
    assert ledger.store.all_session_attempts(default) == []


@pytest.mark.parametrize("family", ["gitea", "forgejo"])
def test_gitea_and_forgejo_pushes_are_recorded_once_per_delivery(
    ledger: Ledger, family: str
) -> None:
    """One route for both: recorded, then the same delivery id answers duplicate."""
    session_id = _session(ledger, "gitea", GITEA_REPO_ID)
    payload = gitea_payload([gitea_commit(1), gitea_commit(2)], total=2)
    first = deliver_gitea(ledger.store, payload, family=family, delivery_id="d-1")
    again = deliver_gitea(ledger.store, payload, family=family, delivery_id="d-1")
    assert (first.status, again.status) == (202, 200)
    assert again.body["attempt_ids"] == first.body["attempt_ids"]
    assert len(ledger.store.all_session_attempts(session_id)) == 2


@pytest.mark.parametrize(
    "attack",
    [
        "gitlab-wrong-token",
        "gitlab-missing-token",
        "gitlab-unsigned-when-signing-required",
        "gitlab-replayed-signature",
        "gitlab-token-of-another-project",
        "gitea-wrong-secret",
        "gitea-secret-of-another-owner",
    ],
)
def test_token_and_signature_attacks_write_nothing(ledger: Ledger, attack: str) -> None:
    """Each attack is a 401 with no row written anywhere, audit log included."""
    _session(ledger, "gitlab", GITLAB_PROJECT_ID)
    _session(ledger, "gitea", GITEA_REPO_ID)
    gl, gt = gitlab_payload([gitlab_commit(attack)]), gitea_payload([gitea_commit(attack)])
    signed = gitlab_creds(signing=GITLAB_SIGNING)
    sends = {
        "gitlab-wrong-token": lambda: deliver_gitlab(ledger.store, gl, token="guess"),
        "gitlab-missing-token": lambda: deliver_gitlab(ledger.store, gl, token=None),
        "gitlab-unsigned-when-signing-required": lambda: deliver_gitlab(
            ledger.store, gl, creds=signed
        ),
        "gitlab-replayed-signature": lambda: deliver_gitlab(
            ledger.store, gl, creds=signed, signing=GITLAB_SIGNING, timestamp=int(time.time()) - 900
        ),
        "gitlab-token-of-another-project": lambda: deliver_gitlab(
            ledger.store, gl, creds=gitlab_creds(tokens=f"project:1={GITLAB_TOKEN}")
        ),
        "gitea-wrong-secret": lambda: deliver_gitea(ledger.store, gt, secret="guess"),
        "gitea-secret-of-another-owner": lambda: deliver_gitea(
            ledger.store, gt, secrets=f"owner:{GITEA_OWNER_ID + 1}=test-gitea-secret"
        ),
    }
    before = ledger.store.count_rows()
    with pytest.raises(SignatureRejected):
        sends[attack]()
    assert ledger.store.count_rows() == before


_text = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=25),
    st.sampled_from(
        ["ünïcödé ✓", "🧪👩🏽‍💻", "\u202eRTL", "'; DROP TABLE attempts; --", "x" * 3000]
    ),
)


def _gitlab_case(draw: st.DrawFn, repository_id: int) -> dict[str, Any]:
    files = draw(st.lists(_text, max_size=3))
    commits = [
        gitlab_commit(uuid.uuid4(), message=draw(_text), added=files, author={"name": draw(_text)})
        for _ in range(draw(st.integers(0, 3)))
    ]
    payload = gitlab_payload(commits, project_id=repository_id, path=f"g/{draw(_text)}")
    payload["user_name"] = draw(_text)
    return payload


def _gitea_case(draw: st.DrawFn, repository_id: int) -> dict[str, Any]:
    files = draw(st.lists(_text, max_size=3))
    commits = [
        gitea_commit(uuid.uuid4(), message=draw(_text), modified=files)
        for _ in range(draw(st.integers(0, 3)))
    ]
    payload = gitea_payload(commits, repository_id=repository_id)
    payload["pusher"]["full_name"] = draw(_text)
    return payload


def _refused_or_recorded(ledger: Ledger, forge: str, payload: dict[str, Any], send: Any) -> None:
    before = ledger.store.count_rows()
    try:
        answer: WebhookAnswer = send()
    except CLIENT_ERRORS as refused:
        assert str(refused) and ledger.store.count_rows() == before
        return
    report = ledger.store.delivery_report(forge, str(answer.body["delivery_id"]))
    assert report.push is not None
    listed = payload["commits"]
    # An empty GitLab list still carries the head the ref now points at (`checkout_sha`).
    head = [payload["checkout_sha"]] if forge == "gitlab" and not listed else []
    assert [a.commit.sha for a in report.attempts] == [c["id"] for c in listed] + head
    for attempt, sent in zip(report.attempts, listed, strict=False):
        assert attempt.commit.message == sent["message"]
        files = sent["added"] if forge == "gitlab" else sent["modified"]
        got = attempt.commit.files.added if forge == "gitlab" else attempt.commit.files.modified
        assert got == tuple(files)
    name = payload["user_name"] if forge == "gitlab" else payload["pusher"]["full_name"]
    assert report.push.pusher.name == (name or None if forge == "gitea" else name)


@HYPOTHESIS
@given(data=st.data(), forge=st.sampled_from(["gitlab", "gitea"]))
def test_hostile_text_is_refused_cleanly_or_recorded_exactly(
    ledger: Ledger, data: st.DataObject, forge: str
) -> None:
    """NUL, lone code points, RTL marks and SQL in every text field: 400 or an exact record."""
    repository_id = next(_ids)
    _session(ledger, forge, repository_id)
    if forge == "gitlab":
        payload = data.draw(st.composite(_gitlab_case)(repository_id))
        send = lambda: deliver_gitlab(ledger.store, payload)  # noqa: E731
    else:
        payload = data.draw(st.composite(_gitea_case)(repository_id))
        send = lambda: deliver_gitea(ledger.store, payload)  # noqa: E731
    _refused_or_recorded(ledger, forge, payload, send)


@HYPOTHESIS
@given(data=st.data(), forge=st.sampled_from(["gitlab", "gitea"]))
def test_corrupted_signed_bytes_are_refused_cleanly(
    ledger: Ledger, data: st.DataObject, forge: str
) -> None:
    """Signed garbage (cut, spliced or bit-flipped JSON) is a 4xx with nothing written."""
    payload = gitlab_payload([gitlab_commit(1)]) if forge == "gitlab" else gitea_payload([])
    body = json.dumps(payload).encode()
    cut = data.draw(st.integers(0, len(body) - 1))
    junk = data.draw(st.binary(max_size=8))
    corrupted = body[:cut] + junk + body[cut + data.draw(st.integers(1, 20)) :]
    before = ledger.store.count_rows()
    send = deliver_gitlab if forge == "gitlab" else deliver_gitea
    try:
        answer = send(ledger.store, corrupted)  # type: ignore[operator]
    except CLIENT_ERRORS:
        assert ledger.store.count_rows() == before
    else:  # a splice inside a string can leave valid JSON: then it is simply recorded
        grown = ledger.store.count_rows()["deliveries"] - before["deliveries"]
        assert answer.status == 202 and grown == 1


def test_identity_claims_are_kept_as_claims(ledger: Ledger) -> None:
    """GitLab lists no committer: it is recorded as unknown, not copied from the author."""
    _session(ledger, "gitlab", GITLAB_PROJECT_ID)
    answer = deliver_gitlab(ledger.store, gitlab_payload([gitlab_commit("who")]))
    attempt = ledger.store.get_attempt(answer.body["attempt_ids"][0]).attempt  # type: ignore[index]
    assert attempt.commit.committer == Identity(None, None)
    assert attempt.sender.id == 777 and attempt.commit.author.name == "Ada Student"


def test_attempt_notifications_name_the_forge_instance(ledger: Ledger) -> None:
    """A subscriber learns which forge (and instance) an announced attempt came from."""
    store = SqlStore(ledger.engine, ("grader",))
    _session(ledger, "gitea:uni2", GITEA_REPO_ID)
    deliver_gitea(store, gitea_payload([gitea_commit("n")]), secrets="uni2@*=test-gitea-secret")
    with ledger.engine.connect() as conn:
        payload = conn.execute(sql("SELECT payload FROM outbox_events")).scalar_one()
    data = payload if isinstance(payload, dict) else json.loads(payload)
    assert (data["type"], data["data"]["forge"]) == ("attempt.recorded", "gitea:uni2")


_MUTANTS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
_MUTABLE = {
    "gitlab": [
        "ref",
        "before",
        "after",
        "checkout_sha",
        "user_id",
        "user_username",
        "project",
        "total_commits_count",
        "commits",
    ],
    "gitea": [
        "ref",
        "before",
        "after",
        "total_commits",
        "head_commit",
        "repository",
        "pusher",
        "sender",
        "commits",
    ],
}


@HYPOTHESIS
@given(forge=st.sampled_from(["gitlab", "gitea"]), data=st.data(), value=_MUTANTS)
def test_mutated_public_examples_are_refused_cleanly_or_recorded(
    ledger: Ledger, forge: str, data: st.DataObject, value: Any
) -> None:
    """A public example with one field set to any JSON value: 400 with nothing written, or 202."""
    name = "gitlab-docs-push-hook.json" if forge == "gitlab" else "gitea-docs-push-webhook.json"
    payload = json.loads((FIXTURES / forge / name).read_bytes())
    payload[data.draw(st.sampled_from(_MUTABLE[forge]))] = value
    send = deliver_gitlab if forge == "gitlab" else deliver_gitea
    before = ledger.store.count_rows()
    try:
        answer = send(ledger.store, payload)  # type: ignore[operator]
    except CLIENT_ERRORS as refused:
        assert str(refused) and ledger.store.count_rows() == before
    else:
        assert answer.status in (200, 202) and answer.outcome in ("recorded", "duplicate")


@pytest.mark.parametrize("forge", ["gitlab", "gitea"])
def test_body_over_the_limit_is_refused_before_authentication(ledger: Ledger, forge: str) -> None:
    """An oversized body is a 413 before any secret is compared; nothing is written."""
    body = b"{" + b" " * 100 + b"}"
    before = ledger.store.count_rows()
    with pytest.raises(BodyTooLarge):
        if forge == "gitlab":
            receive_gitlab(ledger.store, gitlab_creds(), gitlab_headers(body), body, OPEN, 50)
        else:
            receive_gitea(ledger.store, gitea_secrets(), gitea_headers(body), body, OPEN, 50)
    assert ledger.store.count_rows() == before


@pytest.mark.parametrize("forge", ["gitlab", "gitlab:uni2", "gitea"])
def test_session_created_after_a_forge_push_picks_up_its_attempts(
    ledger: Ledger, forge: str
) -> None:
    """A GitLab (any instance) or Gitea push recorded before its session still becomes attempts."""
    if forge.startswith("gitlab"):
        creds = gitlab_creds(tokens=f"{GITLAB_TOKEN}, uni2@*=uni2-token")
        token = "uni2-token" if forge == "gitlab:uni2" else GITLAB_TOKEN
        payload = gitlab_payload([gitlab_commit("early-1"), gitlab_commit("early-2")])
        answer = deliver_gitlab(ledger.store, payload, creds=creds, token=token)
        repository_id = GITLAB_PROJECT_ID
    else:
        answer = deliver_gitea(ledger.store, gitea_payload([gitea_commit("early-1")]))
        repository_id = GITEA_REPO_ID
    assert answer.body["attempt_ids"] == []
    session_id = _session(ledger, forge, repository_id)
    picked = ledger.store.all_session_attempts(session_id)
    assert len(picked) == (1 if forge == "gitea" else 2)
    assert {a.delivery_id for a in picked} == {answer.body["delivery_id"]}
