"""What one push delivery records, on every store (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from labledger.core.errors import DeliveryConflict
from tests.conftest import Ledger
from tests.contract.helpers import audit_actions, deliver, ledger_counts
from tests.support import REPO_ID, commit, fixture_bytes, push_payload, session_spec

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _session(ledger: Ledger, **overrides: object) -> int:
    return ledger.store.create_session(session_spec(**overrides), "test", NOW).id


def test_push_records_one_attempt_per_commit_with_every_field(ledger: Ledger) -> None:
    """Each commit of a push to a matching session becomes one attempt carrying the full record."""
    session_id = _session(ledger)
    c1, c2 = commit(1), commit(2, added=["docs/ünïcode ✓.md"], removed=["old.txt"])
    answer = deliver(ledger.store, push_payload([c1, c2]), delivery_id="d-fields")
    assert answer.status == 202 and answer.outcome == "recorded"
    ids = answer.body["attempt_ids"]
    assert isinstance(ids, list) and len(ids) == 2

    record = ledger.store.get_attempt(ids[1])
    a = record.attempt
    assert (a.session_id, a.commit.sha, a.commit.tree_sha) == (session_id, c2["id"], c2["tree_id"])
    assert a.commit.message == c2["message"]
    assert a.commit.author.email == "ada@example.edu" and a.commit.author.username == "ada"
    assert a.commit.timestamp == "2026-11-20T10:00:00+01:00"
    assert a.commit.files.added == ("docs/ünïcode ✓.md",)
    assert a.commit.files.removed == ("old.txt",) and a.commit.files.modified == ("README.md",)
    assert (a.sender.login, a.sender.id) == ("ada", 777)
    assert a.pusher.email == "ada@example.edu"
    assert a.branch == "main"
    assert a.pushed_at == datetime.fromtimestamp(1_764_000_000, UTC)
    assert a.delivery_id == "d-fields" and record.delivery.delivery_id == "d-fields"
    assert record.push.id == a.push_id and record.push.commit_shas == (c1["id"], c2["id"])


def test_redelivery_answers_as_the_first_and_writes_no_ledger_rows(ledger: Ledger) -> None:
    """A redelivery returns the same attempt ids, adds only an audit note, keeps first times."""
    _session(ledger)
    payload = push_payload([commit(), commit()])
    first = deliver(ledger.store, payload, delivery_id="d-redeliver", received_at=NOW)
    before = ledger_counts(ledger.store)
    again = deliver(
        ledger.store, payload, delivery_id="d-redeliver", received_at=NOW + timedelta(days=2)
    )
    assert again.status == 200 and again.outcome == "duplicate"
    assert again.body["attempt_ids"] == first.body["attempt_ids"]
    assert again.body["push_id"] == first.body["push_id"]
    assert ledger_counts(ledger.store) == before
    assert audit_actions(ledger.store)[-1] == "delivery.duplicate"
    stored = ledger.store.find_delivery("github", "d-redeliver")
    assert stored is not None and stored.received_at == NOW


def test_same_delivery_id_from_another_hook_is_the_same_event(ledger: Ledger) -> None:
    """Every hook subscribed to one event gets the same delivery id: acknowledged as duplicate."""
    _session(ledger)
    payload = push_payload([commit()])
    deliver(ledger.store, payload, delivery_id="d-hooks", hook_id="1")
    other_body = dict(payload, hook_extra="another hook's view")
    answer = deliver(ledger.store, other_body, delivery_id="d-hooks", hook_id="2")
    assert answer.outcome == "duplicate"
    assert ledger_counts(ledger.store)["deliveries"] == 1


def test_same_delivery_id_same_hook_other_body_is_a_conflict(ledger: Ledger) -> None:
    """Delivery-id reuse with another body by the same hook is refused and audited, nothing else."""
    _session(ledger)
    deliver(ledger.store, push_payload([commit()]), delivery_id="d-conflict", hook_id="1")
    before = ledger_counts(ledger.store)
    with pytest.raises(DeliveryConflict) as caught:
        deliver(ledger.store, push_payload([commit()]), delivery_id="d-conflict", hook_id="1")
    assert caught.value.delivery_id == "d-conflict"
    assert ledger_counts(ledger.store) == before
    assert audit_actions(ledger.store)[-1] == "delivery.conflict"


def test_same_commit_pushed_again_never_makes_a_second_attempt(ledger: Ledger) -> None:
    """Another branch, distinct=false or a new delivery of a known commit: a push, no attempt."""
    session_id = _session(ledger)
    c = commit()
    deliver(ledger.store, push_payload([c]))
    again = deliver(ledger.store, push_payload([dict(c, distinct=False)], ref="refs/heads/feature"))
    assert again.outcome == "recorded" and again.body["attempt_ids"] == []
    assert len(ledger.store.session_attempts(session_id)) == 1
    # the re-appearance is still evidence: the second push lists the commit it carried
    push = ledger.store.delivery_report("github", str(again.body["delivery_id"])).push
    assert push is not None and push.commit_shas == (c["id"],)


def test_force_push_keeps_the_commits_it_removes(ledger: Ledger) -> None:
    """Commits a force-push drops from the branch stay in the ledger; the push is marked forced."""
    session_id = _session(ledger)
    old1, old2 = commit(), commit()
    deliver(ledger.store, push_payload([old1, old2]))
    rewritten = commit()
    answer = deliver(ledger.store, push_payload([rewritten], forced=True, before=old2["id"]))
    shas = [a.commit.sha for a in ledger.store.session_attempts(session_id)]
    assert shas == [old1["id"], old2["id"], rewritten["id"]]
    push = ledger.store.get_attempt(answer.body["attempt_ids"][0]).push  # type: ignore[index]
    assert push.forced and push.before == old2["id"]


def test_force_push_back_to_a_known_commit_is_recorded_without_a_new_attempt(
    ledger: Ledger,
) -> None:
    """Resetting a branch to an older commit reports commits: [] and only a head; no new attempt."""
    session_id = _session(ledger)
    old = commit()
    deliver(ledger.store, push_payload([old, commit()]))
    answer = deliver(ledger.store, push_payload([], forced=True, head_commit=old))
    assert answer.body["attempt_ids"] == []
    assert len(ledger.store.session_attempts(session_id)) == 2
    push = ledger.store.delivery_report("github", str(answer.body["delivery_id"])).push
    assert push is not None and push.forced and push.commit_shas == (old["id"],)


@pytest.mark.parametrize(
    ("case", "session_overrides", "payload_overrides"),
    [
        ("unknown repository", {}, {"repository_id": 999}),
        ("branch not matching", {"branch_glob": "submit/*"}, {"ref": "refs/heads/main"}),
        ("session closed", {"closes_at": datetime(2025, 6, 1, tzinfo=UTC)}, {}),
        ("session not open yet", {"opens_at": datetime(2027, 1, 1, tzinfo=UTC)}, {}),
        ("tag push", {}, {"ref": "refs/tags/v1.0"}),
        ("branch deletion", {}, {"deleted": True, "head_commit": None}),
    ],
)
def test_evidence_without_attempt(
    ledger: Ledger,
    case: str,
    session_overrides: dict[str, object],
    payload_overrides: dict[str, object],
) -> None:
    """Pushes that match no open session's branch are kept as delivery and push, with no attempt."""
    _session(ledger, **session_overrides)
    commits = [] if payload_overrides.get("deleted") else [commit()]
    answer = deliver(ledger.store, push_payload(commits, **payload_overrides))  # type: ignore[arg-type]
    assert answer.status == 202 and answer.body["attempt_ids"] == [], case
    counts = ledger_counts(ledger.store)
    assert (counts["deliveries"], counts["pushes"], counts["attempts"]) == (1, 1, 0), case


def test_branch_glob_selects_sessions(ledger: Ledger) -> None:
    """Two sessions on one repository each get the commits of the branches they match."""
    submit = _session(ledger, branch_glob="submit/*", lab_id="lab-a")
    everything = _session(ledger, lab_id="lab-b")
    answer = deliver(ledger.store, push_payload([commit()], ref="refs/heads/submit/final"))
    assert len(answer.body["attempt_ids"]) == 2  # type: ignore[arg-type]
    assert len(ledger.store.session_attempts(submit)) == 1
    assert len(ledger.store.session_attempts(everything)) == 1


def test_lateness_uses_forge_push_time_not_commit_time(ledger: Ledger) -> None:
    """A back-dated commit pushed after the deadline is late; pushed_at is what counts."""
    due = datetime.fromtimestamp(1_764_000_000, UTC)
    session = ledger.store.create_session(session_spec(due_at=due), "test", NOW)
    backdated = commit(timestamp="2000-01-01T00:00:00Z")
    deliver(ledger.store, push_payload([backdated], pushed_at=1_764_000_001))
    (attempt,) = ledger.store.session_attempts(session.id)
    assert attempt.trusted_time == due + timedelta(seconds=1)
    assert session.is_late(attempt.trusted_time)


def test_without_pushed_at_received_time_is_trusted(ledger: Ledger) -> None:
    """When the forge gives no push time, the receipt time (first receipt only) is used."""
    session = ledger.store.create_session(session_spec(), "test", NOW)
    received = datetime(2026, 1, 1, tzinfo=UTC)
    deliver(ledger.store, push_payload([commit()], pushed_at=None), received_at=received)
    (attempt,) = ledger.store.session_attempts(session.id)
    assert attempt.pushed_at is None and attempt.trusted_time == received


def test_raw_body_is_kept_with_its_hash(ledger: Ledger) -> None:
    """The exact bytes of an accepted delivery can be read back and match the stored sha256."""
    import hashlib

    body = fixture_bytes("octokit-webhooks-push-with-new-branch.payload.json")
    deliver(ledger.store, body, delivery_id="d-raw")
    stored = ledger.store.find_delivery("github", "d-raw")
    assert stored is not None
    assert ledger.store.raw_body("github", "d-raw") == body
    assert stored.body_sha256 == hashlib.sha256(body).digest()


def test_recorded_fixture_payloads(ledger: Ledger) -> None:
    """Every public example payload is accepted; only the branch push yields an attempt."""
    _session(ledger, repository_id=REPO_ID, opens_at=datetime(2019, 1, 1, tzinfo=UTC))
    produced = {}
    for name in (
        "octokit-webhooks-push-payload.json",
        "octokit-webhooks-push-1.payload.json",
        "octokit-webhooks-push-with-installation.payload.json",
        "octokit-webhooks-push-with-organization.payload.json",
        "octokit-webhooks-push-with-new-branch.payload.json",
        "octokit-webhooks-push-with-no-username-committer.payload.json",
        "octokit-webhooks-ghes35-push-payload.json",
    ):
        produced[name] = deliver(ledger.store, fixture_bytes(name), received_at=NOW).body
    assert len(produced["octokit-webhooks-push-with-new-branch.payload.json"]["attempt_ids"]) == 1  # type: ignore[arg-type]
    # the no-username fixture carries the same commit SHA: no second attempt
    assert (
        produced["octokit-webhooks-push-with-no-username-committer.payload.json"]["attempt_ids"]
        == []
    )
    assert ledger_counts(ledger.store)["pushes"] == 7


def test_one_insert_records_each_new_commit_once_per_session_in_ledger_order(
    ledger: Ledger,
) -> None:
    """A push naming a commit twice and one already recorded adds each new pair once, ids rising."""
    sessions = (_session(ledger), _session(ledger, lab_id="lab-other"))
    old, a, b = commit(), commit(), commit()
    first = deliver(ledger.store, push_payload([old]), delivery_id="d-old")
    answer = deliver(ledger.store, push_payload([old, a, a, b]), delivery_id="d-mixed")
    ids = answer.body["attempt_ids"]
    assert isinstance(ids, list) and ids == sorted(ids) and len(ids) == 4
    assert not set(ids) & set(first.body["attempt_ids"])  # type: ignore[arg-type]
    recorded = {
        (r.attempt.session_id, r.attempt.commit.sha) for r in map(ledger.store.get_attempt, ids)
    }
    assert recorded == {(s, c["id"]) for s in sessions for c in (a, b)}
    again = deliver(ledger.store, push_payload([old, a, a, b]), delivery_id="d-mixed")
    assert again.body["attempt_ids"] == ids
