"""The GitHub adapter under hostile input: signatures, headers and push payload parsing."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from labledger.config import Settings
from labledger.core.errors import ConfigError, MalformedPayload, NotJson, SignatureRejected
from labledger.core.model import Push
from labledger.forges.github import parse_github_push, read_envelope, verify_signature
from tests.support import FIXTURES, body_of, commit, push_payload, sha, sign

# GitHub docs, "Validating webhook deliveries" (forge-facts.md).
VECTOR_SECRET = b"It's a Secret to Everybody"
VECTOR_BODY = b"Hello, World!"
VECTOR_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

SECRET = b"the-configured-secret"
BODY = body_of(push_payload([commit("sig")]))
GOOD = "sha256=" + hmac.new(SECRET, BODY, hashlib.sha256).hexdigest()

NASTY_TEXT = [
    "ünïcödé ✓",
    "emoji 🧪🔬👩🏽‍💻 and a flag 🇺🇦",
    "\u202eRTL override\u202c and \u200fmark\u200e",
    "עברית ועוד عربي",
    "zero\u200bwidth\ufeffbom",
    "'; DROP TABLE attempts; --",
    '" OR 1=1 -- \\',
    "$(rm -rf /) `id` && echo pwned | tee /etc/passwd; >x <y",
    "%s %n %x {0} {{7*7}} ${jndi:ldap://x}",
    "line\nbreak\r\nand\ttab and \x7f del and \x1b[31m escape",
    "back\\slash \\u0000 literal, not a NUL",
    "\U0010ffff last code point",
    "a" * 10_000,
]
FIXTURE_FILES = sorted(p.name for p in (FIXTURES / "github").glob("*payload*.json"))


def _payload(**options: Any) -> dict[str, Any]:
    """A fresh, independent push payload (commits and head_commit not shared)."""
    made: dict[str, Any] = json.loads(
        body_of(push_payload([commit("p1"), commit("p2")], **options))
    )
    return made


def _set(payload: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.split(".")
    node: Any = payload
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if isinstance(node, list) else last] = value
    return payload


def _delete(payload: dict[str, Any], path: str) -> dict[str, Any]:
    *parents, last = path.split(".")
    node: Any = payload
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    del node[int(last) if isinstance(node, list) else last]
    return payload


def _parse(payload: dict[str, Any]) -> Push:
    return parse_github_push(body_of(payload))


def _refused(body: bytes) -> MalformedPayload:
    with pytest.raises(MalformedPayload) as caught:
        parse_github_push(body)
    return caught.value


# -- signatures ---------------------------------------------------------------------------


def test_github_documented_test_vector_verifies() -> None:
    """GitHub's published secret/body/signature triple is accepted."""
    assert hmac.new(VECTOR_SECRET, VECTOR_BODY, hashlib.sha256).hexdigest() == VECTOR_SIGNATURE[7:]
    verify_signature(VECTOR_SECRET, VECTOR_BODY, VECTOR_SIGNATURE)


def test_test_vector_fails_with_one_byte_changed_in_the_body() -> None:
    """The documented signature does not cover a body differing by one trailing newline."""
    with pytest.raises(SignatureRejected):
        verify_signature(VECTOR_SECRET, VECTOR_BODY + b"\n", VECTOR_SIGNATURE)


@pytest.mark.parametrize("header", [None, ""])
def test_missing_signature_is_rejected(header: str | None) -> None:
    """A request without X-Hub-Signature-256 is refused even though a secret is configured."""
    with pytest.raises(SignatureRejected, match="missing"):
        verify_signature(SECRET, BODY, header)


def test_sha1_signature_alone_is_rejected() -> None:
    """A correct legacy `sha1=` HMAC is not accepted in place of sha256."""
    legacy = "sha1=" + hmac.new(SECRET, BODY, hashlib.sha1).hexdigest()
    with pytest.raises(SignatureRejected, match="sha256="):
        verify_signature(SECRET, BODY, legacy)


@pytest.mark.parametrize(
    "header",
    [
        "SHA256=" + GOOD[7:],
        "sha-256=" + GOOD[7:],
        GOOD[7:],
        "sha256:" + GOOD[7:],
        " sha256=" + GOOD[7:],
    ],
)
def test_signature_scheme_other_than_lowercase_sha256_is_rejected(header: str) -> None:
    """Only the exact `sha256=` prefix GitHub sends is accepted, even with the right digest."""
    with pytest.raises(SignatureRejected):
        verify_signature(SECRET, BODY, header)


def test_signature_made_with_another_secret_is_rejected() -> None:
    """A well-formed signature made with a different secret is refused."""
    with pytest.raises(SignatureRejected, match="does not match"):
        verify_signature(SECRET, BODY, sign(BODY, "not-the-secret"))


@pytest.mark.parametrize(
    "header",
    [
        GOOD[:-2],  # one byte short
        GOOD[:-1],  # odd number of digits
        GOOD[:39],  # a 32-digit prefix
        "sha256=",
        GOOD + "00",  # one byte long
        GOOD + GOOD[7:],  # digest twice
    ],
)
def test_truncated_or_extended_signature_is_rejected(header: str) -> None:
    """A digest of the wrong length never matches, whatever its prefix."""
    with pytest.raises(SignatureRejected):
        verify_signature(SECRET, BODY, header)


@pytest.mark.parametrize(
    "digest",
    ["g" * 64, "0x" + "a" * 62, "é" * 64, "\uff17" * 64, "-" * 64, "\x00" * 64, GOOD[7:-1] + "z"],
)
def test_non_hex_signature_is_rejected(digest: str) -> None:
    """A digest that is not hexadecimal is refused as such."""
    with pytest.raises(SignatureRejected):
        verify_signature(SECRET, BODY, "sha256=" + digest)


@pytest.mark.parametrize("digest", [GOOD[7:].upper(), GOOD[7:].swapcase()])
def test_upper_case_hex_digest_is_the_same_digest(digest: str) -> None:
    """Hex case carries no information: upper or mixed case of the right MAC is accepted.

    GitHub sends lower case; `bytes.fromhex` decodes either, and the comparison is over the
    32 decoded bytes, so accepting another case gives an attacker nothing.
    """
    verify_signature(SECRET, BODY, "sha256=" + digest)


def test_upper_case_hex_of_a_wrong_digest_is_still_rejected() -> None:
    """Case-insensitivity does not loosen the comparison itself."""
    with pytest.raises(SignatureRejected):
        verify_signature(SECRET, BODY, sign(BODY, "other").upper().replace("SHA256=", "sha256="))


def test_another_deliverys_signature_is_rejected() -> None:
    """A valid signature copied from another delivery does not authenticate this body."""
    other = body_of(push_payload([commit("other delivery")]))
    with pytest.raises(SignatureRejected, match="does not match"):
        verify_signature(
            SECRET, BODY, "sha256=" + hmac.new(SECRET, other, hashlib.sha256).hexdigest()
        )


def test_signature_made_with_an_empty_key_is_rejected() -> None:
    """A signature anyone can compute (HMAC with an empty key) is refused under a real secret."""
    with pytest.raises(SignatureRejected):
        verify_signature(SECRET, BODY, "sha256=" + hmac.new(b"", BODY, hashlib.sha256).hexdigest())


def test_empty_configured_secret_means_no_secret_and_fails_closed() -> None:
    """An empty LABLEDGER_GITHUB_WEBHOOK_SECRET is unset: no key exists to accept webhooks with."""
    settings = Settings.from_env({"LABLEDGER_GITHUB_WEBHOOK_SECRET": ""})
    assert settings.github_webhook_secret is None
    with pytest.raises(ConfigError):
        settings.github_secret_bytes()


def test_signature_is_compared_with_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    """The digest comparison goes through hmac.compare_digest (constant time), never `==`."""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    verify_signature(SECRET, BODY, GOOD)
    with pytest.raises(SignatureRejected):
        verify_signature(SECRET, BODY, sign(BODY, "other"))
    assert len(calls) == 2 and all(len(a) == len(b) == 32 for a, b in calls)


# -- headers ------------------------------------------------------------------------------


def _headers(**changes: str | None) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "x-github-event": "push",
        "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        "x-github-hook-id": "292430182",
    }
    for name, value in changes.items():
        key = name.replace("_", "-")
        if value is None:
            headers.pop(key, None)
        else:
            headers[key] = value
    return headers


def test_envelope_reads_event_delivery_and_hook() -> None:
    """A normal GitHub request yields its event, delivery id and hook id."""
    envelope = read_envelope(_headers())
    assert envelope.event == "push"
    assert envelope.delivery_id == "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    assert envelope.hook_id == "292430182"


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON"])
def test_json_content_type_variants_are_accepted(content_type: str) -> None:
    """Parameters and letter case of the JSON media type do not matter."""
    assert read_envelope(_headers(content_type=content_type)).event == "push"


@pytest.mark.parametrize(
    "content_type",
    [None, "", "application/x-www-form-urlencoded", "text/plain", "application/jsonx"],
)
def test_non_json_content_type_is_refused(content_type: str | None) -> None:
    """GitHub's form encoding, or any other type, is refused as not JSON (415)."""
    with pytest.raises(NotJson):
        read_envelope(_headers(content_type=content_type))


@pytest.mark.parametrize(
    ("header", "value"),
    [("x_github_event", None), ("x_github_event", "  "), ("x_github_delivery", None)],
)
def test_missing_event_or_delivery_header_is_malformed(header: str, value: str | None) -> None:
    """Without an event name or delivery id there is nothing to record exactly once."""
    with pytest.raises(MalformedPayload, match="missing X-GitHub-"):
        read_envelope(_headers(**{header: value}))


@pytest.mark.parametrize(
    "delivery_id",
    ["d" * 101, "délivery", "🧪", "a\x00b", "a\x01b", "tab\there", "new\nline", "del\x7f"],
)
def test_unstorable_delivery_id_is_malformed(delivery_id: str) -> None:
    """Over-long, non-ASCII or control-character delivery ids are refused before storage."""
    with pytest.raises(MalformedPayload, match="X-GitHub-Delivery"):
        read_envelope(_headers(x_github_delivery=delivery_id))


def test_longest_printable_delivery_id_is_accepted() -> None:
    """Exactly 100 printable ASCII characters (punctuation included) fit the column."""
    delivery_id = ("x'; DROP--$(id)" * 10)[:100]
    assert read_envelope(_headers(x_github_delivery=delivery_id)).delivery_id == delivery_id


@pytest.mark.parametrize("hook_id", ["1" * 41, "a\x00b", "hook\x1b[0m", "hoök"])
def test_unstorable_hook_id_is_malformed(hook_id: str) -> None:
    """Over-long, NUL-bearing or non-ASCII hook ids are a 400, not a database error later."""
    with pytest.raises(MalformedPayload, match="X-GitHub-Hook-ID"):
        read_envelope(_headers(x_github_hook_id=hook_id))


@pytest.mark.parametrize(("given", "read"), [(None, None), ("   ", None), ("9" * 40, "9" * 40)])
def test_hook_id_is_optional_and_may_fill_the_column(given: str | None, read: str | None) -> None:
    """An absent or blank hook id reads as None; 40 characters are accepted."""
    assert read_envelope(_headers(x_github_hook_id=given)).hook_id == read


# -- real payloads --------------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURE_FILES)
def test_every_recorded_github_fixture_parses(name: str) -> None:
    """Each real push payload from octokit/webhooks parses into a Push with its repository id."""
    raw = (FIXTURES / "github" / name).read_bytes()
    push = parse_github_push(raw)
    data = json.loads(raw)
    assert push.repository_id == data["repository"]["id"]
    assert push.ref == data["ref"] and push.after == data["after"]
    assert push.sender.id == data["sender"]["id"]


def test_unknown_fields_are_ignored() -> None:
    """Fields GitHub may add later do not make a payload malformed."""
    payload = _payload()
    payload["future_field"] = {"nested": [1, 2.5, None, "x"]}
    payload["commits"][0]["verification"] = {"verified": True}
    assert len(_parse(payload).commits) == 2


def test_optional_commit_fields_may_be_absent() -> None:
    """username, tree_id, timestamp, author and file lists are optional in a commit."""
    payload = _payload()
    for key in ("tree_id", "timestamp", "author", "added", "removed", "modified", "distinct"):
        del payload["commits"][0][key]
    del payload["commits"][1]["committer"]["username"]
    first, second = _parse(payload).commits
    assert first.tree_sha is None and first.timestamp is None and first.distinct is True
    assert first.author.name is None and first.files.added == ()
    assert second.committer.username is None and second.committer.name == "Ada Student"


def test_sha256_object_ids_are_accepted() -> None:
    """Repositories in SHA-256 object format send 64-digit ids."""
    long_sha = hashlib.sha256(b"x").hexdigest()
    payload = _set(_set(_payload(), "after", long_sha), "commits.0.id", long_sha)
    assert _parse(payload).commits[0].sha == long_sha


# -- missing and mistyped fields --------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "ref",
        "before",
        "after",
        "repository",
        "repository.id",
        "repository.full_name",
        "pusher",
        "sender",
        "sender.id",
        "sender.login",
        "commits.0.id",
        "commits.1.id",
        "head_commit.id",
    ],
)
def test_missing_required_field_is_named(path: str) -> None:
    """A missing required field is refused with a message naming it by its dotted path."""
    error = _refused(body_of(_delete(_payload(), path)))
    assert f"{path}: Field required" in str(error)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("ref", 5),
        ("ref", None),
        ("before", 123),
        ("after", ["x"]),
        ("created", "true"),
        ("deleted", 0),
        ("forced", None),
        ("commits", "not a list"),
        ("commits", {"0": {}}),
        ("commits.0", "c0ffee"),
        ("commits.0.id", 5),
        ("commits.0.id", None),
        ("commits.1.message", None),
        ("commits.0.distinct", 1),
        ("commits.0.added", "src/main.py"),
        ("commits.0.added.0", 7),
        ("commits.0.author", "Ada"),
        ("commits.0.author.email", False),
        ("commits.0.timestamp", 1_764_000_000),
        ("head_commit", []),
        ("repository.id", "186853002"),
        ("repository.id", 186853002.0),
        ("repository.id", True),
        ("repository.full_name", None),
        ("pusher", "ada"),
        ("pusher.name", 1),
        ("sender.id", "777"),
        ("sender.login", None),
    ],
)
def test_mistyped_field_is_named(path: str, value: Any) -> None:
    """A field of the wrong JSON type is refused, naming the field; strings are never coerced."""
    error = _refused(body_of(_set(_payload(), path, value)))
    assert str(error).startswith(path + ":") or f"; {path}:" in str(error), str(error)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("ref", "heads/main"),
        ("ref", "refs/heads/" + "b" * 4096),
        ("before", "ABCDEF" * 7 + "AB"),
        ("after", "0" * 39),
        ("commits.0.id", sha("x")[:7]),
        ("commits.0.id", sha("x") + "0"),
        ("commits.0.tree_id", "z" * 40),
        ("repository.id", 0),
        ("repository.id", -186853002),
        ("repository.id", 2**63),
        ("sender.id", 0),
    ],
)
def test_out_of_range_value_is_named(path: str, value: Any) -> None:
    """Values of the right type but impossible for GitHub are refused, naming the field."""
    error = _refused(body_of(_set(_payload(), path, value)))
    assert str(error).startswith(path + ":"), str(error)


def test_largest_repository_id_that_fits_bigint_is_accepted() -> None:
    """2**63-1 is the largest repository id the database column can hold."""
    assert _parse(_set(_payload(), "repository.id", 2**63 - 1)).repository_id == 2**63 - 1


def test_many_problems_are_summarised() -> None:
    """A payload with many errors lists the first three and counts the rest."""
    payload = _payload()
    for key in ("ref", "before", "after", "repository", "pusher", "sender"):
        del payload[key]
    assert "(and 3 more)" in str(_refused(body_of(payload)))


# -- not JSON, not UTF-8 ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b" ",
        b"{",
        b"null",
        b"[]",
        b'"push"',
        b"42",
        b"{'ref': 'refs/heads/main'}",
        BODY + b" trailing",
        BODY[:-1],
        BODY[: len(BODY) // 2],
        b"ref=refs%2Fheads%2Fmain",
        b"payload=%7B%7D",
    ],
)
def test_invalid_json_is_malformed(body: bytes) -> None:
    """Bodies that are not one JSON object are refused with a message, never a crash."""
    assert str(_refused(body))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"work on lab", b"work \xff on lab"),  # not UTF-8 at all
        (b"work on lab", b"work \xc0\xaf on lab"),  # overlong encoding of '/'
        (b"work on lab", b"work \xed\xa0\x80 on lab"),  # UTF-8-encoded surrogate
        (b"work on lab", b"work \xe2\x82 on lab"),  # truncated sequence
        (b'"compare"', b'"comp\xfeare"'),  # in a key the parser ignores
    ],
)
def test_invalid_utf8_is_malformed(old: bytes, new: bytes) -> None:
    """A body that is not valid UTF-8, anywhere, is refused."""
    body = body_of(push_payload([commit("utf8")]))
    assert old in body
    assert "Invalid JSON" in str(_refused(body.replace(old, new, 1)))


@pytest.mark.parametrize(
    "body", [b"\xef\xbb\xbf" + BODY, BODY.decode().encode("utf-16"), BODY.decode().encode("utf-32")]
)
def test_bom_or_other_unicode_encodings_are_malformed(body: bytes) -> None:
    """GitHub sends bare UTF-8: a BOM or a UTF-16/32 body is refused, not guessed at."""
    _refused(body)


@pytest.mark.parametrize(
    "path",
    [
        "ref",
        "commits.0.message",
        "commits.0.added.0",
        "commits.0.author.name",
        "commits.0.committer.email",
        "commits.0.timestamp",
        "repository.full_name",
        "pusher.name",
        "sender.login",
    ],
)
def test_nul_character_in_any_stored_string_is_named(path: str) -> None:
    """A \\u0000 escape in a stored text field is refused (PostgreSQL text cannot hold it)."""
    payload = _payload(ref="refs/heads/main")
    current: Any = payload
    for part in path.split("."):
        current = current[int(part)] if isinstance(current, list) else current[part]
    error = _refused(body_of(_set(payload, path, current + "\x00tail")))
    assert str(error).startswith(path + ":") and "NUL" in str(error)


def test_nul_in_an_ignored_field_is_accepted() -> None:
    """Fields the ledger does not store may hold NUL: the raw body is kept as bytes."""
    payload = _payload()
    payload["compare"] = "x\x00y"
    assert _parse(payload).ref == "refs/heads/main"


def test_raw_control_byte_inside_a_json_string_is_malformed() -> None:
    """An unescaped NUL byte inside a string is invalid JSON."""
    body = body_of(push_payload([commit("raw")])).replace(b"work on lab", b"work \x00 on lab", 1)
    assert "Invalid JSON" in str(_refused(body))


@pytest.mark.parametrize(
    "escape", [b"\\ud800", b"\\udfff", b"\\ud800\\u0041", b"\\ud800\\ud800", b"\\ude00\\ud83d"]
)
def test_lone_surrogate_escape_is_malformed(escape: bytes) -> None:
    """A \\uD800-style escape that is not a valid surrogate pair cannot become text."""
    body = body_of(push_payload([commit("sur")])).replace(b"work on lab", escape, 1)
    _refused(body)


def test_valid_surrogate_pair_escape_decodes_to_the_character() -> None:
    """An escaped surrogate pair is one astral character, preserved exactly."""
    body = body_of(push_payload([commit("pair")])).replace(b"work on lab", b"\\ud83e\\uddea", 1)
    assert parse_github_push(body).commits[0].message.startswith("🧪")


DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "body",
    [
        BODY[:-1] + b', "deep": ' + DEEP + b"}",  # in a field the parser ignores
        BODY.replace(b'"commits": [', b'"commits": [' + DEEP + b", ", 1),  # in a known one
    ],
    ids=["ignored-field", "commits"],
)
def test_deep_nesting_is_malformed_not_a_recursion_error(body: bytes) -> None:
    """100,000 nested arrays are refused by the parser's depth limit, never a RecursionError."""
    assert "recursion limit" in str(_refused(body))


def test_moderate_nesting_in_an_ignored_field_is_accepted() -> None:
    """Fifty levels of nesting in a field the ledger ignores do not refuse the push."""
    payload = _payload()
    nested: Any = "leaf"
    for _ in range(50):
        nested = {"n": [nested]}
    payload["custom"] = nested
    assert _parse(payload).ref == "refs/heads/main"


@pytest.mark.parametrize("number", [b"1e999", b"-1e999", b"9" * 5000, b"NaN", b"Infinity"])
def test_absurd_numbers_in_ignored_fields_never_crash(number: bytes) -> None:
    """Out-of-range or non-standard numbers either parse or are refused, never raise otherwise."""
    body = BODY[:-1] + b', "size_hint": ' + number + b"}"
    try:
        parse_github_push(body)
    except MalformedPayload as exc:
        assert "Invalid JSON" in str(exc)


# -- pushed_at ---------------------------------------------------------------------------------


def _pushed_at(value: Any) -> datetime | None:
    return _parse(_set(_payload(), "repository.pushed_at", value)).pushed_at


def _refused_pushed_at(value: Any) -> MalformedPayload:
    return _refused(body_of(_set(_payload(), "repository.pushed_at", value)))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_764_000_000, datetime(2025, 11, 24, 16, 0, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        (253_402_214_400, datetime(9999, 12, 31, tzinfo=UTC)),
        (None, None),
    ],
)
def test_integer_epoch_pushed_at_becomes_utc(value: int | None, expected: datetime | None) -> None:
    """An integer Unix time (the push event's form) is read as an aware UTC datetime."""
    assert _pushed_at(value) == expected


def test_absent_pushed_at_is_none() -> None:
    """Without repository.pushed_at the push has no forge time (received_at will serve)."""
    payload = _payload()
    del payload["repository"]["pushed_at"]
    assert _parse(payload).pushed_at is None


@pytest.mark.parametrize("value", [-1, -(2**63), 253_402_214_401, 10**20, 10**300, 2**64])
def test_implausible_integer_pushed_at_is_refused(value: int) -> None:
    """Negative epochs and ones beyond year 9999 are refused, naming repository.pushed_at."""
    error = _refused_pushed_at(value)
    assert error.location == "repository.pushed_at" and "plausible" in error.problem


@pytest.mark.parametrize("value", [1_764_000_000.0, 1.5, -0.5, 1e300, True, False, [1], {"t": 1}])
def test_non_integer_non_string_pushed_at_is_refused(value: Any) -> None:
    """Floats (even integral ones), booleans, arrays and objects are not a push time."""
    assert "repository.pushed_at" in str(_refused_pushed_at(value))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2019-05-15T15:20:57Z", datetime(2019, 5, 15, 15, 20, 57, tzinfo=UTC)),
        ("2019-05-15T17:20:57+02:00", datetime(2019, 5, 15, 15, 20, 57, tzinfo=UTC)),
        ("2019-05-15T10:20:57.123456-05:00", datetime(2019, 5, 15, 15, 20, 57, 123456, UTC)),
        ("1970-01-01T00:00:00+00:00", datetime(1970, 1, 1, tzinfo=UTC)),
        ("9999-12-31T23:59:59Z", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_iso_string_pushed_at_is_converted_to_utc(value: str, expected: datetime) -> None:
    """An ISO 8601 string with an offset (the create/delete event form) is read in UTC."""
    moment = _pushed_at(value)
    assert moment == expected and moment is not None and moment.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("1764000000", "not a timestamp"),
        ("", "not a timestamp"),
        ("yesterday", "not a timestamp"),
        ("2019-02-30T00:00:00Z", "not a timestamp"),
        ("2019-05-15T15:20:57+25:00", "not a timestamp"),
        ("10000-01-01T00:00:00Z", "not a timestamp"),
        ("2019-05-15T15:20:57", "lacks a time zone"),
        ("2019-05-15", "lacks a time zone"),
        # Valid ISO strings whose UTC form falls outside datetime's range (was OverflowError).
        ("0001-01-01T00:30:00+01:00", "out of range"),
        ("9999-12-31T23:30:00-01:00", "out of range"),
        # One rule for both forms: before 1970 is refused as a negative epoch is.
        ("0001-01-01T00:00:00+00:00", "plausible"),
        ("1969-12-31T23:59:59Z", "plausible"),
    ],
)
def test_bad_iso_string_pushed_at_is_refused(value: str, problem: str) -> None:
    """Unparsable, zone-less or out-of-range ISO strings are refused, never an OverflowError."""
    error = _refused_pushed_at(value)
    assert error.location == "repository.pushed_at" and problem in error.problem


# -- text preserved exactly -------------------------------------------------------------------


@pytest.mark.parametrize("text", NASTY_TEXT)
def test_hostile_text_is_preserved_exactly_in_every_field(text: str) -> None:
    """Unicode, RTL, emoji, SQL and shell metacharacters are data: accepted and kept verbatim."""
    person = {"name": text, "email": text, "username": text}
    c = commit(
        "nasty",
        message=text,
        timestamp=text,
        author=person,
        committer=person,
        added=[text, f"dir/{text}"],
        modified=[text],
        removed=[text],
    )
    branch = text[:4000]  # a ref is at most 4096 characters
    payload = push_payload([c], ref="refs/heads/" + branch)
    payload["repository"]["full_name"] = text
    payload["pusher"] = {"name": text, "email": text}
    payload["sender"]["login"] = text
    push = parse_github_push(json.dumps(payload, ensure_ascii=False).encode())
    assert push.ref == "refs/heads/" + branch and push.branch == branch
    assert push.repository_full_name == text and push.sender.login == text
    assert push.pusher.name == text and push.pusher.email == text
    (parsed,) = push.commits
    assert parsed.message == text and parsed.timestamp == text
    assert parsed.author.name == parsed.author.email == parsed.author.username == text
    assert parsed.committer.name == parsed.committer.username == text
    assert parsed.files.added == (text, f"dir/{text}")
    assert parsed.files.modified == (text,) and parsed.files.removed == (text,)


def test_escaped_and_literal_unicode_read_the_same() -> None:
    """`\\uXXXX` escapes (json.dumps default) and raw UTF-8 decode to identical text."""
    text = NASTY_TEXT[1] + NASTY_TEXT[2]
    payload = push_payload([commit("esc", message=text)])
    escaped = parse_github_push(json.dumps(payload).encode())
    literal = parse_github_push(json.dumps(payload, ensure_ascii=False).encode())
    assert escaped.commits[0].message == literal.commits[0].message == text


# -- push semantics ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("forced", "created", "deleted", "rewrite"),
    [
        (True, False, False, True),
        (True, True, False, False),
        (True, False, True, False),
        (True, True, True, False),
        (False, False, False, False),
        (False, True, False, False),
    ],
)
def test_only_a_forced_update_of_an_existing_ref_is_a_rewrite(
    forced: bool, created: bool, deleted: bool, rewrite: bool
) -> None:
    """Old captures flag creates and deletes as forced: only forced updates rewrite history."""
    push = _parse(_payload(forced=forced, created=created, deleted=deleted))
    assert push.forced is forced and push.rewrites_history is rewrite


def test_head_commit_is_carried_when_commits_is_empty() -> None:
    """A branch created at an existing commit reports commits: [] and the head is still carried."""
    head = commit("existing")
    push = _parse(push_payload([], created=True, head_commit=head))
    assert push.commits == () and [c.sha for c in push.carried_commits()] == [head["id"]]


def test_head_commit_already_listed_is_not_carried_twice() -> None:
    """When head_commit is the last of commits[], each commit is carried once, in order."""
    c1, c2 = commit("a"), commit("b")
    push = _parse(push_payload([c1, c2]))
    assert [c.sha for c in push.carried_commits()] == [c1["id"], c2["id"]]


def test_head_commit_outside_commits_is_carried_last() -> None:
    """An annotated-tag-style head that is not among commits[] is appended to the carried list."""
    c1, head = commit("c"), commit("tagged")
    push = _parse(push_payload([c1], head_commit=head))
    assert [c.sha for c in push.carried_commits()] == [c1["id"], head["id"]]


def test_deleted_ref_carries_no_commits() -> None:
    """A branch deletion (after = 40 zeros, head_commit null) carries nothing."""
    push = _parse(push_payload([], deleted=True, forced=True))
    assert push.after == "0" * 40 and push.head_commit is None and push.carried_commits() == ()


def test_tag_push_has_no_branch() -> None:
    """A tag ref is parsed but names no branch, so it can never become an attempt."""
    push = parse_github_push(
        (FIXTURES / "github" / "octokit-webhooks-push-payload.json").read_bytes()
    )
    assert push.ref.startswith("refs/tags/") and push.branch is None


@pytest.mark.parametrize(("count", "complete"), [(2047, True), (2048, False)])
def test_a_full_2048_commit_list_is_marked_possibly_incomplete(count: int, complete: bool) -> None:
    """GitHub caps commits[] at 2048 without a total: a full list may be truncated."""
    commits = [commit(("many", i), added=[], modified=[]) for i in range(count)]
    push = _parse(push_payload(commits))
    assert len(push.commits) == count and push.commit_list_complete is complete


def test_commit_with_ten_thousand_files_keeps_them_all_in_order() -> None:
    """A very large commit keeps every path, in the order GitHub listed them."""
    files = [f"src/ünï/{i:05d} 🧪.py" for i in range(10_000)]
    push = _parse(push_payload([commit("big", added=files, modified=files[:3])]))
    assert push.commits[0].files.added == tuple(files)
    assert push.commits[0].files.modified == tuple(files[:3])


def test_an_empty_secret_refuses_every_request() -> None:
    """With no secret, verification fails closed even for a body 'signed' with the empty key."""
    body = b"{}"
    signature = "sha256=" + hmac.new(b"", body, hashlib.sha256).hexdigest()
    with pytest.raises(SignatureRejected, match="no webhook secret"):
        verify_signature(b"", body, signature)
