"""Known-answer tests for C2SP signed notes and Go-compatible note keys.

The PeterNeumann and EnochRoot keys, texts and signatures are the published
vectors of golang.org/x/mod, sumdb/note/note_test.go (TestSign, TestOpen,
TestNewVerifier, TestNewSigner). Ed25519 is deterministic (RFC 8032), so our
signature must equal theirs byte for byte.
"""

from __future__ import annotations

import base64

import pytest

from labledger.core.errors import BadSignature, MalformedKey, MalformedNote, MissingSignature
from labledger.core.note import SignerKey, VerifierKey, key_id, open_note, sign_note

PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKv"
    "qfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwn"
    "WLox33WWd1RvMc+QQ=\n"
)
PETER = VerifierKey.parse(PETER_VKEY)
ENOCH = VerifierKey.parse(ENOCH_VKEY)


def test_signing_reproduces_the_go_note_byte_for_byte() -> None:
    """Signing the Go example text with the Go example key yields the published note."""
    assert sign_note(TEXT, SignerKey.parse(PETER_SKEY)) == TEXT + "\n" + PETER_SIG


def test_go_keys_parse_and_encode_back_unchanged() -> None:
    """Go's signer and verifier key strings round-trip, and the key ID is c74f20a3."""
    signer = SignerKey.parse(PETER_SKEY)
    assert signer.encode() == PETER_SKEY
    assert signer.verifier == PETER
    assert PETER.encode() == PETER_VKEY
    assert key_id("PeterNeumann", PETER.public_key) == bytes.fromhex("c74f20a3")


def test_go_note_opens_with_its_key() -> None:
    """The published note verifies and yields its text, from str or UTF-8 bytes."""
    assert open_note(TEXT + "\n" + PETER_SIG, PETER) == TEXT
    assert open_note((TEXT + "\n" + PETER_SIG).encode(), PETER) == TEXT


def test_doubly_signed_note_opens_with_either_key() -> None:
    """A signature by another key is ignored, whatever its position."""
    assert open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, PETER) == TEXT
    assert open_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, ENOCH) == TEXT
    assert open_note(TEXT + "\n" + ENOCH_SIG + PETER_SIG, PETER) == TEXT


def test_note_without_the_trusted_key_is_rejected() -> None:
    """A note signed only by other keys raises MissingSignature naming the trusted key."""
    with pytest.raises(MissingSignature) as raised:
        open_note(TEXT + "\n" + PETER_SIG, ENOCH)
    assert (raised.value.key_name, raised.value.key_id) == ("EnochRoot", bytes.fromhex("af0cfe78"))


def test_same_name_or_same_key_id_alone_does_not_count() -> None:
    """Signatures sharing only the name, or only the key ID, with the trusted key are ignored."""
    renamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego")
    other_id = PETER_SIG.replace("x08g", "xxxx")
    for sig in (renamed, other_id):
        with pytest.raises(MissingSignature):
            open_note(TEXT + "\n" + sig, PETER)


def test_tampered_text_is_rejected() -> None:
    """Changing one character of the signed text makes the trusted signature fail."""
    note = TEXT.replace("cryptography", "cryptographY") + "\n" + PETER_SIG
    with pytest.raises(BadSignature):
        open_note(note, PETER)


def test_tampered_signature_is_rejected() -> None:
    """Corrupt signature bytes under the trusted key ID reject the whole note."""
    with pytest.raises(BadSignature):
        open_note(TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:], PETER)


def test_short_signature_under_the_trusted_key_id_is_rejected() -> None:
    """A signature line with our name and key ID but too few signature bytes fails."""
    blob = base64.b64encode(PETER.key_id + bytes(8)).decode()
    with pytest.raises(BadSignature):
        open_note(f"{TEXT}\n— PeterNeumann {blob}\n", PETER)


def test_repeated_signatures_are_tolerated_as_go_does() -> None:
    """Go's TestOpen case: duplicates and a corrupt signature by an unknown key still open."""
    enoch_corrupt = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    note = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_corrupt
    assert open_note(note, PETER) == TEXT


@pytest.mark.parametrize(
    "note",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + TEXT + "\n" + PETER_SIG,
        TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name"),
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + "— PeterNeumann\n",
        TEXT + "\n" + "— PeterNeumann AAAA\n",
        TEXT + "\n" + "— PeterNeumann not*base64\n",
        TEXT + "\n" + PETER_SIG * 101,
    ],
)
def test_malformed_notes_are_rejected(note: str) -> None:
    """Go's malformed messages (and a few more) raise MalformedNote, not a signature error."""
    with pytest.raises(MalformedNote):
        open_note(note, PETER)


def test_invalid_utf8_is_rejected() -> None:
    """A note must be valid UTF-8, as bytes or as a str with no lone surrogates."""
    with pytest.raises(MalformedNote):
        open_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode(), PETER)
    with pytest.raises(MalformedNote):
        open_note("\udcff" + TEXT + "\n" + PETER_SIG, PETER)


def test_every_mangling_of_a_verifier_key_is_rejected() -> None:
    """As Go's TestNewVerifier: every proper substring and every one-byte change is refused."""
    accepted = []
    for i in range(len(PETER_VKEY) + 1):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)):
                accepted += _parses(VerifierKey.parse, PETER_VKEY[i:j])
    for i in range(len(PETER_VKEY)):
        accepted += _parses(VerifierKey.parse, _bump(PETER_VKEY, i))
    # Go's wrong key length and unknown algorithm, each with an adjusted key ID.
    accepted += _parses(
        VerifierKey.parse,
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
    )
    accepted += _parses(
        VerifierKey.parse, "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    )
    assert accepted == []


def test_every_mangling_of_a_signer_key_is_rejected() -> None:
    """As Go's TestNewSigner: every proper substring and every one-byte change is refused."""
    accepted = []
    for i in range(len(PETER_SKEY) + 1):
        for j in range(i + 1, len(PETER_SKEY) + 1):
            if (i, j) != (0, len(PETER_SKEY)):
                accepted += _parses(SignerKey.parse, PETER_SKEY[i:j])
    for i in range(len(PETER_SKEY)):
        accepted += _parses(SignerKey.parse, _bump(PETER_SKEY, i))
    assert accepted == []


def _parses(parse: object, text: str) -> list[str]:
    assert callable(parse)
    try:
        parse(text)
    except MalformedKey:
        return []
    return [text]


def _bump(text: str, i: int) -> str:
    return text[:i] + chr(ord(text[i]) + 1) + text[i + 1 :]


def test_generated_keys_round_trip_and_sign() -> None:
    """A new key's strings parse back to the same key, and its notes open with its verifier."""
    signer = SignerKey.generate("ledger.example/lab-ledger")
    again = SignerKey.parse(signer.encode())
    assert again.verifier == signer.verifier
    assert VerifierKey.parse(signer.verifier.encode()) == signer.verifier
    assert open_note(sign_note("hello\n", again), signer.verifier) == "hello\n"


@pytest.mark.parametrize("name", ["", "two words", "a+b", "tab\tname", "nbsp\u00a0name"])
def test_invalid_key_names_are_refused(name: str) -> None:
    """Key names are non-empty and contain no Unicode space and no plus sign."""
    with pytest.raises(MalformedKey):
        VerifierKey(name, bytes(32))


@pytest.mark.parametrize("text", ["no newline", "bell\x07\n"])
def test_texts_that_cannot_be_notes_are_not_signed(text: str) -> None:
    """Signing refuses a text without a final newline or with a control character."""
    with pytest.raises(ValueError):
        sign_note(text, SignerKey.parse(PETER_SKEY))
