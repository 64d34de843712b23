"""Hostile GitHub deliveries through the real store, on SQLite and PostgreSQL.

The property every test here checks: an input either raises one of labledger's 4xx errors
with nothing written (`count_rows()` unchanged), or is recorded exactly — one delivery, one
push, the carried commits and the attempts, with every text field read back unchanged and
the raw body kept byte for byte. Never any other exception.
"""

from __future__ import annotations

import copy
import itertools
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import text as sql

from labledger.config import GITHUB_MAX_BODY_BYTES
from labledger.core.errors import (
    BodyTooLarge,
    DeliveryConflict,
    MalformedPayload,
    NotJson,
    SignatureRejected,
)
from labledger.core.model import Account, Identity
from labledger.services.ingest import WebhookAnswer, receive_github
from labledger.storage.sql_store import SqlStore
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.support import FIXTURES, SECRET, body_of, commit, headers_for, push_payload, session_spec

CLIENT_ERRORS = (MalformedPayload, SignatureRejected, NotJson, BodyTooLarge, DeliveryConflict)
HYPOTHESIS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MAX_EPOCH = 253_402_214_400  # 9999-12-31T00:00:00Z, the parser's upper bound
PLACEHOLDER_REPO_ID = 4242  # replaced by a fresh id per example, when a mutation left it alone
_repository_ids = itertools.count(9_000_000_001)

TEMPLATES = {
    p.name: json.loads(p.read_bytes()) for p in sorted((FIXTURES / "github").glob("*payload*.json"))
}
NASTY = [
    "ünïcödé ✓",
    "🧪🔬👩🏽‍💻🇺🇦",
    "\u202eRTL override\u202c \u200f\u200e",
    "עברית عربي",
    "zero\u200bwidth\ufeffbom\u0301",
    "'; DROP TABLE attempts; --",
    '" OR 1=1 -- \\',
    "$(rm -rf /) `id` && echo x | tee /etc/passwd; >x <y",
    "%s %n {0} {{7*7}} ${jndi:ldap://x}",
    "line\nbreak\r\n\ttab \x7f \x1b[31m",
    "back\\slash \\u0000 literal",
    "\U0010ffff",
    "",
    "x" * 5_000,
]

# -- strategies ---------------------------------------------------------------------------------

_clean_chars = st.characters(codec="utf-8", exclude_characters="\x00")
clean_text = st.one_of(
    st.text(_clean_chars, max_size=30),
    st.sampled_from(NASTY),
    st.lists(st.sampled_from(NASTY[:-1]), min_size=1, max_size=3).map("".join),
)
# Any Unicode scalar, NUL included (surrogates cannot be encoded as UTF-8 at all).
hostile_text = st.one_of(
    clean_text,
    st.text(st.characters(codec="utf-8"), max_size=30),
    clean_text.map(lambda s: s + "\x00"),
)
hex_sha = st.one_of(
    st.text("0123456789abcdef", min_size=40, max_size=40),
    st.text("0123456789abcdef", min_size=64, max_size=64),
)
_offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
valid_pushed_at = st.one_of(
    st.none(),
    st.integers(0, MAX_EPOCH),
    st.datetimes(datetime(1970, 1, 2), datetime(9998, 12, 31), timezones=_offsets).map(
        datetime.isoformat
    ),
)
absurd_pushed_at = st.one_of(
    valid_pushed_at,
    st.integers(),
    st.integers(-(2**70), -1),
    st.just(10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.just(1_764_000_000.0),
    st.sampled_from(
        [
            "1764000000",
            "",
            "2019-05-15T15:20:57",
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "2019-02-30T00:00:00Z",
            "now",
        ]
    ),
    hostile_text,
    st.datetimes(timezones=_offsets).map(datetime.isoformat),
)
json_values = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**30), 10**30),
        st.floats(allow_nan=False, allow_infinity=False),
        hostile_text,
        hex_sha,
    ),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def people(text: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"name": text | st.none(), "email": text | st.none()},
        optional={"username": text | st.none()},
    )


def commit_dicts(text: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    files = st.lists(text, max_size=4)
    return st.fixed_dictionaries(
        {
            "id": hex_sha,
            "tree_id": hex_sha,
            "distinct": st.booleans(),
            "message": text,
            "timestamp": text | st.none(),
            "url": st.just("https://github.com/octo/lab/commit/x"),
            "author": people(text),
            "committer": people(text),
            "added": files,
            "removed": files,
            "modified": files,
        }
    )


@st.composite
def push_payloads(
    draw: st.DrawFn,
    text: st.SearchStrategy[str] = clean_text,
    pushed_at: st.SearchStrategy[Any] = valid_pushed_at,
) -> dict[str, Any]:
    """Push payloads in the octokit schema's shape, built on one of the recorded fixtures."""
    payload = copy.deepcopy(TEMPLATES[draw(st.sampled_from(sorted(TEMPLATES)))])
    commits = draw(st.lists(commit_dicts(text), max_size=4))
    deleted = draw(st.booleans())
    head = draw(st.sampled_from(["last", "null", "other"]))
    head_commit = {
        "last": commits[-1] if commits else None,
        "null": None,
        "other": draw(commit_dicts(text)),
    }[head]
    kind = draw(st.sampled_from(["refs/heads/", "refs/heads/", "refs/tags/"]))
    payload.update(
        ref=kind + draw(text.map(lambda s: s[:4000])),
        before=draw(hex_sha),
        after="0" * 40 if deleted else draw(hex_sha),
        created=draw(st.booleans()),
        deleted=deleted,
        forced=draw(st.booleans()),
        commits=commits,
        head_commit=None if deleted else head_commit,
        pusher=draw(people(text)),
    )
    payload["repository"]["id"] = PLACEHOLDER_REPO_ID
    payload["repository"]["full_name"] = draw(text)
    value = draw(pushed_at)
    if draw(st.integers(0, 9)) == 0:
        del payload["repository"]["pushed_at"]
    else:
        payload["repository"]["pushed_at"] = value
    payload["sender"]["login"] = draw(text)
    payload["sender"]["id"] = draw(st.integers(1, 2**63 - 1))
    return payload


_INTERESTING_UNDER = {"repository": {"id", "full_name", "pushed_at"}, "sender": {"id", "login"}}


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every value the parser reads (and a few it ignores), for mutation."""
    found: list[tuple[Any, ...]] = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, child in node.items():
            wanted = _INTERESTING_UNDER.get(prefix[0]) if len(prefix) == 1 else None
            if wanted is not None and key not in wanted:
                continue
            found += _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            found += _paths(child, (*prefix, index))
    return found


def _same_kind(value: Any) -> st.SearchStrategy[Any]:
    """A replacement of the same JSON type, so that some mutations stay valid."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.one_of(st.integers(), st.integers(0, MAX_EPOCH), absurd_pushed_at)
    if isinstance(value, str):
        return st.one_of(hostile_text, hex_sha)
    if isinstance(value, list):
        return st.lists(hostile_text, max_size=3)
    return st.just({})


@st.composite
def mutated(draw: st.DrawFn, payload: dict[str, Any]) -> dict[str, Any]:
    """Drop, mistype or replace (same type, hostile value) one to three values of a payload."""
    result = copy.deepcopy(payload)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(result)
        if not paths:
            break
        *parents, last = draw(st.sampled_from(paths))
        node: Any = result
        for part in parents:
            node = node[part]
        operation = draw(st.sampled_from(["drop", "mistype", "same-type", "same-type"]))
        if operation == "drop":
            del node[last]
        else:
            kind = json_values if operation == "mistype" else _same_kind(node[last])
            node[last] = draw(kind)
    return result


_JUNK = [
    b"\xff",
    b"\xc0\xaf",
    b"\xed\xa0\x80",
    b"\xe2\x82",
    b"\x00",
    b"\\u0000",
    b"\\ud800",
    b"\\udfff\\ud800",
    b'"',
    b"\\",
    b"{",
    b"]",
    b",",
    b"[" * 5_000,
    b"9" * 4_400,
    b"\xef\xbb\xbf",
]


@st.composite
def corrupted(draw: st.DrawFn, body: bytes) -> bytes:
    """Byte-level damage: truncation, junk (invalid UTF-8, NUL, surrogates, nesting), bit flips."""
    operation = draw(st.sampled_from(["truncate", "insert", "in-string", "flip"]))
    if operation == "truncate":
        return body[: draw(st.integers(0, len(body) - 1))]
    junk = draw(st.sampled_from(_JUNK) | st.binary(min_size=1, max_size=8))
    if operation == "in-string":
        anchor = draw(st.sampled_from([b'"ref": "', b'"message": "', b'"login": "', b'"name": "']))
        return body.replace(anchor, anchor + junk, 1)
    position = draw(st.integers(0, len(body)))
    if operation == "insert":
        return body[:position] + junk + body[position:]
    position = min(position, len(body) - 1)
    flipped = body[position] ^ (1 << draw(st.integers(0, 7)))
    return body[:position] + bytes([flipped]) + body[position + 1 :]


# -- the property --------------------------------------------------------------------------------


def _open_session(store: SqlStore) -> int:
    """A session for a repository id no other example uses, open since year 1, every branch."""
    repository_id = next(_repository_ids)
    spec = session_spec(
        repository_id=repository_id, opens_at=datetime(1, 1, 1, tzinfo=UTC), due_at=None
    )
    store.create_session(spec, "test", NOW)
    return repository_id


def _claim_repository(payload: dict[str, Any], repository_id: int) -> None:
    repository = payload.get("repository")
    if not isinstance(repository, dict):
        return
    # `type(...) is int`: a mutation to 4242.0 or True must stay what it is (and be refused).
    if type(repository.get("id")) is int and repository["id"] == PLACEHOLDER_REPO_ID:
        repository["id"] = repository_id


def _encode(payload: dict[str, Any], ascii_only: bool) -> bytes:
    return json.dumps(payload, ensure_ascii=ascii_only).encode()


def refused_or_recorded(
    store: SqlStore, body: bytes, session_repository_id: int, send: Callable[[], WebhookAnswer]
) -> str:
    """Run `send`; assert a clean 4xx with nothing written, or an exact record. Say which."""
    before = store.count_rows()
    try:
        answer = send()
    except CLIENT_ERRORS as refused:
        assert str(refused), "a refusal must say why"
        assert store.count_rows() == before, f"partial write on refusal: {refused}"
        return f"refused: {type(refused).__name__}"
    assert_recorded_exactly(store, answer, body, session_repository_id, before)
    return "recorded"


def _carried(data: dict[str, Any]) -> list[dict[str, Any]]:
    if data.get("deleted", False):
        return []
    commits: list[dict[str, Any]] = data.get("commits", [])
    head = data.get("head_commit")
    if head is not None and head["id"] not in {c["id"] for c in commits}:
        return [*commits, head]
    return commits


def _expected_pushed_at(data: dict[str, Any]) -> datetime | None:
    value = data["repository"].get("pushed_at")
    if value is None:
        return None
    if isinstance(value, int):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(value).astimezone(UTC)


def _identity(person: dict[str, Any] | None) -> Identity:
    person = person or {}
    return Identity(person.get("name"), person.get("email"), person.get("username"))


def assert_recorded_exactly(
    store: SqlStore,
    answer: WebhookAnswer,
    body: bytes,
    session_repository_id: int,
    before: dict[str, int],
) -> None:
    """The stored delivery, push and attempts equal what the signed body says, field by field."""
    data = json.loads(body.decode("utf-8"))
    assert (answer.status, answer.outcome) == (202, "recorded"), answer
    delivery_id = str(answer.body["delivery_id"])
    assert store.raw_body("github", delivery_id) == body

    report = store.delivery_report("github", delivery_id)
    push = report.push
    assert push is not None and push.id == answer.body["push_id"]
    assert (push.ref, push.before, push.after) == (data["ref"], data["before"], data["after"])
    flags = tuple(data.get(k, False) for k in ("created", "deleted", "forced"))
    assert (push.created, push.deleted, push.forced) == flags
    assert push.repository_id == data["repository"]["id"]
    assert push.repository_full_name == data["repository"]["full_name"]
    assert push.pusher == Identity(data["pusher"].get("name"), data["pusher"].get("email"))
    assert push.sender == Account(data["sender"]["login"], data["sender"]["id"])
    assert push.pushed_at == _expected_pushed_at(data)
    carried = _carried(data)
    assert push.commit_shas == tuple(c["id"] for c in carried)
    assert push.commit_list_complete is (len(data.get("commits", [])) < 2048)

    first_seen: dict[str, dict[str, Any]] = {}
    is_branch = data["ref"].startswith("refs/heads/") and not data.get("deleted", False)
    if is_branch and data["repository"]["id"] == session_repository_id:
        for c in carried:
            first_seen.setdefault(c["id"], c)
    assert [a.commit.sha for a in report.attempts] == list(first_seen)
    assert [a.id for a in report.attempts] == answer.body["attempt_ids"]
    for attempt in report.attempts:
        c = first_seen[attempt.commit.sha]
        got = attempt.commit
        assert got.message == c.get("message", "") and got.tree_sha == c.get("tree_id")
        assert got.timestamp == c.get("timestamp") and got.distinct is c.get("distinct", True)
        assert got.author == _identity(c.get("author"))
        assert got.committer == _identity(c.get("committer"))
        assert got.files.added == tuple(c.get("added", []))
        assert got.files.modified == tuple(c.get("modified", []))
        assert got.files.removed == tuple(c.get("removed", []))
        assert attempt.branch == data["ref"][len("refs/heads/") :]
        assert attempt.pushed_at == push.pushed_at and attempt.sender == push.sender
        assert attempt.delivery_id == delivery_id

    after = store.count_rows()
    growth = {table: after[table] - before[table] for table in after}
    # Tables not named below (sessions, checkpoints, Merkle nodes, ...) stay as they were.
    expected = dict.fromkeys(growth, 0)
    expected.update(
        deliveries=1,
        delivery_bodies=1,
        pushes=1,
        push_commits=len(carried),
        attempts=len(first_seen),
        audit_events=1,
    )
    if "log_queue" in growth:  # each new delivery, push, attempt and audit entry awaits the log
        expected["log_queue"] = 3 + len(first_seen)
    assert growth == expected


def _send(store: SqlStore, body: bytes) -> Callable[[], WebhookAnswer]:
    return lambda: deliver(store, body, delivery_id=f"hostile-{uuid.uuid4()}")


# -- property-based tests --------------------------------------------------------------------------


@HYPOTHESIS
@given(payload=push_payloads(), ascii_only=st.booleans())
def test_well_formed_pushes_with_hostile_text_are_recorded_exactly(
    ledger: Ledger, payload: dict[str, Any], ascii_only: bool
) -> None:
    """Schema-shaped pushes full of emoji, RTL, SQL and shell text are recorded byte-identically."""
    repository_id = _open_session(ledger.store)
    _claim_repository(payload, repository_id)
    body = _encode(payload, ascii_only)
    outcome = refused_or_recorded(ledger.store, body, repository_id, _send(ledger.store, body))
    assert outcome == "recorded"


@HYPOTHESIS
@given(payload=push_payloads(pushed_at=absurd_pushed_at), ascii_only=st.booleans(), data=st.data())
def test_mutated_generated_pushes_are_refused_cleanly_or_recorded_exactly(
    ledger: Ledger, payload: dict[str, Any], ascii_only: bool, data: st.DataObject
) -> None:
    """Dropped, mistyped and absurd fields (NUL, timestamps) give a 4xx or an exact record."""
    repository_id = _open_session(ledger.store)
    payload = data.draw(mutated(payload))
    _claim_repository(payload, repository_id)
    body = _encode(payload, ascii_only)
    event(refused_or_recorded(ledger.store, body, repository_id, _send(ledger.store, body)))


@HYPOTHESIS
@given(name=st.sampled_from(sorted(TEMPLATES)), data=st.data())
def test_mutated_real_fixtures_are_refused_cleanly_or_recorded_exactly(
    ledger: Ledger, name: str, data: st.DataObject
) -> None:
    """Real octokit payloads with fields dropped or replaced give a 4xx or an exact record."""
    repository_id = _open_session(ledger.store)
    payload = copy.deepcopy(TEMPLATES[name])
    payload["repository"]["id"] = PLACEHOLDER_REPO_ID
    payload = data.draw(mutated(payload))
    _claim_repository(payload, repository_id)
    body = body_of(payload)
    event(refused_or_recorded(ledger.store, body, repository_id, _send(ledger.store, body)))


@HYPOTHESIS
@given(payload=push_payloads(), data=st.data())
def test_corrupted_bytes_are_refused_cleanly_or_recorded_exactly(
    ledger: Ledger, payload: dict[str, Any], data: st.DataObject
) -> None:
    """Signed bodies with truncation, invalid UTF-8, NUL, surrogates or nesting never crash."""
    repository_id = _open_session(ledger.store)
    _claim_repository(payload, repository_id)
    body = data.draw(corrupted(body_of(payload)))
    event(refused_or_recorded(ledger.store, body, repository_id, _send(ledger.store, body)))


_header_text = st.one_of(
    st.text(st.characters(codec="latin-1"), max_size=60),
    st.text("0123456789", min_size=1, max_size=50),
    st.sampled_from(["\x00", "a\x00b", "x" * 41, "🧪", " padded ", "'; DROP TABLE x; --"]),
)


@HYPOTHESIS
@given(delivery_suffix=_header_text, hook_id=st.none() | _header_text)
def test_hostile_delivery_and_hook_ids_are_refused_cleanly_or_stored_exactly(
    ledger: Ledger, delivery_suffix: str, hook_id: str | None
) -> None:
    """Headers are not signed: any delivery or hook id gives a 400 or is stored as sent."""
    repository_id = _open_session(ledger.store)
    body = body_of(push_payload([commit()], repository_id=repository_id))
    headers = headers_for(body, hook_id=hook_id)
    headers["x-github-delivery"] = f"d{uuid.uuid4().hex}{delivery_suffix}"

    def send() -> WebhookAnswer:
        return receive_github(
            ledger.store, SECRET.encode(), headers, body, NOW, GITHUB_MAX_BODY_BYTES
        )

    outcome = refused_or_recorded(ledger.store, body, repository_id, send)
    event(outcome)
    if outcome == "recorded":
        stored = ledger.store.find_delivery("github", headers["x-github-delivery"].strip())
        assert stored is not None
        assert stored.hook_id == ((hook_id or "").strip() or None)


@HYPOTHESIS
@given(
    header=st.one_of(
        st.none(),
        st.text(st.characters(codec="latin-1"), max_size=80),
        st.text("0123456789abcdefABCDEF", max_size=70).map(lambda h: "sha256=" + h),
    ),
    flip=st.integers(0, 255),
)
def test_forged_signatures_are_refused_with_nothing_written(
    ledger: Ledger, header: str | None, flip: int
) -> None:
    """Random headers and one-bit changes of the right signature are refused (401), nothing kept."""
    body = body_of(push_payload([commit()]))
    right = headers_for(body)["x-hub-signature-256"]
    digest = bytearray(bytes.fromhex(right[7:]))
    digest[flip // 8] ^= 1 << (flip % 8)
    for signature in (header, "sha256=" + digest.hex()):
        headers = headers_for(body)
        if signature is None:
            del headers["x-hub-signature-256"]
        else:
            headers["x-hub-signature-256"] = signature
        before = ledger.store.count_rows()
        with pytest.raises(SignatureRejected):
            receive_github(ledger.store, SECRET.encode(), headers, body, NOW, GITHUB_MAX_BODY_BYTES)
        assert ledger.store.count_rows() == before


# -- huge payloads and known-bad inputs, as ordinary tests -----------------------------------------


def test_push_of_2048_commits_is_recorded_and_marked_possibly_incomplete(ledger: Ledger) -> None:
    """A push at GitHub's 2,048-commit cap records every commit and flags the list as capped."""
    repository_id = _open_session(ledger.store)
    commits = [commit(("cap", i), message=f"step {i} 🧪", added=[f"f{i}.py"]) for i in range(2048)]
    body = body_of(push_payload(commits, repository_id=repository_id))
    refused_or_recorded(ledger.store, body, repository_id, _send(ledger.store, body))
    with ledger.store.engine.connect() as conn:
        details = conn.execute(
            sql("SELECT details FROM audit_events ORDER BY id DESC LIMIT 1")
        ).scalar_one()
    details = json.loads(details) if isinstance(details, str) else details
    assert details["commit_list_complete"] is False and details["attempts"] == 2048


def test_commit_with_ten_thousand_files_is_recorded_with_every_path(ledger: Ledger) -> None:
    """A commit listing 10,000 changed files (unicode, spaces, metacharacters) keeps them all."""
    repository_id = _open_session(ledger.store)
    files = [f"src/{NASTY[i % 12]}/{i:05d} file;$(x).py" for i in range(10_000)]
    body = body_of(
        push_payload([commit("wide", added=files, removed=files[:50])], repository_id=repository_id)
    )
    refused_or_recorded(ledger.store, body, repository_id, _send(ledger.store, body))


def test_every_nasty_string_round_trips_in_every_text_field(ledger: Ledger) -> None:
    """Each hostile string, put in every stored text field, reads back identical on this store."""
    for index, nasty in enumerate(NASTY):
        repository_id = _open_session(ledger.store)
        person = {"name": nasty, "email": nasty, "username": nasty}
        c = commit(("nasty", index), message=nasty, timestamp=nasty, author=person, added=[nasty])
        ref = "refs/heads/" + nasty[:4000]  # a ref is at most 4096 characters
        payload = push_payload([c], ref=ref, repository_id=repository_id)
        payload["repository"]["full_name"] = nasty
        payload["pusher"] = {"name": nasty, "email": nasty}
        payload["sender"]["login"] = nasty
        body = json.dumps(payload, ensure_ascii=index % 2 == 0).encode()
        outcome = refused_or_recorded(ledger.store, body, repository_id, _send(ledger.store, body))
        assert outcome == "recorded", nasty[:80]


def test_body_over_the_limit_is_refused_before_anything_else(ledger: Ledger) -> None:
    """A body one byte over GitHub's 25 MiB cap is refused as too large, nothing written."""
    body = b" " * (GITHUB_MAX_BODY_BYTES + 1)
    before = ledger.store.count_rows()
    with pytest.raises(BodyTooLarge):
        deliver(ledger.store, body)
    assert ledger.store.count_rows() == before


def _with(path: str, value: Any) -> bytes:
    payload = push_payload([commit()])
    node: Any = payload
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return body_of(payload)


_GOOD_BODY = body_of(push_payload([commit("good")]))
KNOWN_BAD_BODIES = {
    "invalid-utf8": _GOOD_BODY.replace(b"work on lab", b"work \xff on", 1),
    "utf8-surrogate": _GOOD_BODY.replace(b"work on lab", b"\xed\xa0\x80", 1),
    "lone-surrogate-escape": _GOOD_BODY.replace(b"work on lab", b"\\udc00", 1),
    "nul-escape-in-path": _with("commits.0.added.0", "src/\x00.py"),
    "nul-escape-in-branch": _with("ref", "refs/heads/ma\x00in"),
    "deep-nesting": _GOOD_BODY[:-1] + b', "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    "huge-number": _GOOD_BODY.replace(b'"pushed_at": 1764000000', b'"pushed_at": ' + b"9" * 4400),
    "negative-pushed-at": _with("repository.pushed_at", -1),
    "float-pushed-at": _with("repository.pushed_at", 1_764_000_000.5),
    "pushed-at-1e20": _with("repository.pushed_at", 10**20),
    # Valid ISO strings whose UTC value is outside datetime's range: was an OverflowError (500).
    "iso-before-year-1-in-utc": _with("repository.pushed_at", "0001-01-01T00:00:00+01:00"),
    "iso-after-9999-in-utc": _with("repository.pushed_at", "9999-12-31T23:59:59-01:00"),
    "truncated": _GOOD_BODY[:-3],
    "not-an-object": b"[]",
}


@pytest.mark.parametrize("name", sorted(KNOWN_BAD_BODIES))
def test_known_bad_bodies_are_malformed_with_nothing_written(ledger: Ledger, name: str) -> None:
    """Each known-hostile signed body is a MalformedPayload (400) and leaves no row behind."""
    body = KNOWN_BAD_BODIES[name]
    before = ledger.store.count_rows()
    with pytest.raises(MalformedPayload):
        deliver(ledger.store, body, delivery_id=f"bad-{name}")
    assert ledger.store.count_rows() == before


@pytest.mark.parametrize(
    ("header", "value", "named"),
    [
        ("x-github-hook-id", "1" * 41, "X-GitHub-Hook-ID"),  # VARCHAR(40): was a 500 on PostgreSQL
        ("x-github-hook-id", "4\x0042", "X-GitHub-Hook-ID"),  # NUL: was a 500 on PostgreSQL
        ("x-github-delivery", "d\x00-nul", "X-GitHub-Delivery"),  # NUL: was a 500 on PostgreSQL
        ("x-github-delivery", "d\n-newline", "X-GitHub-Delivery"),
        ("x-github-delivery", "d" * 101, "X-GitHub-Delivery"),
    ],
)
def test_unstorable_header_ids_are_malformed_with_nothing_written(
    ledger: Ledger, header: str, value: str, named: str
) -> None:
    """Delivery and hook ids the database cannot hold as sent are refused (400) before storage."""
    body = body_of(push_payload([commit()]))
    headers = headers_for(body)
    headers[header] = value
    before = ledger.store.count_rows()
    with pytest.raises(MalformedPayload, match=named):
        receive_github(ledger.store, SECRET.encode(), headers, body, NOW, GITHUB_MAX_BODY_BYTES)
    assert ledger.store.count_rows() == before
