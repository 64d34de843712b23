"""Tests for C2SP tlog-checkpoint signing and verification.

Published vectors:
- sum.golang.org's checkpoint of 2024-09-23 and the Go checksum database key, as
  recorded in github.com/sigsum/sigsum-go, pkg/checkpoint/checkpoint_test.go
  (TestGoSumDBCheckpoint); the key is the one in Go's cmd/go/internal/modfetch/key.go.
- sigsum-go's validCheckpointASCII in the same file: a checkpoint signed with the
  Ed25519 seed 0x11 followed by 31 zero bytes (TestCheckpointSigned).
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from labledger.core.checkpoint import (
    Checkpoint,
    parse_and_verify,
    parse_checkpoint_body,
    sign_checkpoint,
)
from labledger.core.errors import (
    BadSignature,
    MalformedCheckpoint,
    MalformedNote,
    MissingSignature,
    NoteRejected,
    WrongOrigin,
)
from labledger.core.merkle import EMPTY_ROOT
from labledger.core.note import SignerKey, VerifierKey, sign_note

SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_CHECKPOINT = (
    "go.sum database tree\n"
    "30055305\n"
    "mXfgRcJ0bG0j3CPdKwgGWtUzBUbX67saZGRmFuJGGsM=\n"
    "\n"
    "— sum.golang.org Az3grpgEild5qw7+5dtV13Kf1C2Xurm8q4fhdxvcsDHnqNTaxL2AFjBY+2TyGKevucF"
    "cAAlWFJJYle3EJlDCrQ+y3A8=\n"
)
SIGSUM_ORIGIN = (
    "sigsum.org/v1/tree/e796172b92befd62d9dc67e41c2f5bc9d3100a3023b20b1ca40288dd1c679e69"
)
SIGSUM_CHECKPOINT = (
    f"{SIGSUM_ORIGIN}\n10\nHA5HAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n— {SIGSUM_ORIGIN} "
    "gJ2ho0n8F8olcerUF1FFdv235A/5as/coWrpLrtE7ovMeP5whgwouYExowG/lTznxu6OUGjjt5yJQ6bXtTcf718MqAQ=\n"
)
SIGSUM_KEY = Ed25519PrivateKey.from_private_bytes(bytes([17]) + bytes(31))

ORIGIN = "labledger.example/ledger"
ROOT = bytes(range(32))
SIGNER = SignerKey.generate(ORIGIN)


def _signed(size: int = 42, root: bytes = ROOT) -> str:
    return sign_checkpoint(ORIGIN, size, root, SIGNER.private_key, ORIGIN)


def test_published_sumdb_checkpoint_verifies() -> None:
    """A real sum.golang.org checkpoint verifies with Go's published key and parses exactly."""
    checkpoint = parse_and_verify(SUMDB_CHECKPOINT, VerifierKey.parse(SUMDB_VKEY))
    assert checkpoint == Checkpoint(
        "go.sum database tree",
        30055305,
        base64.b64decode("mXfgRcJ0bG0j3CPdKwgGWtUzBUbX67saZGRmFuJGGsM="),
    )
    assert SUMDB_CHECKPOINT.startswith(checkpoint.body() + "\n")


def test_signing_reproduces_the_sigsum_checkpoint_byte_for_byte() -> None:
    """Signing sigsum-go's tree head with its test key yields its published checkpoint."""
    root = base64.b64decode("HA5HAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
    signed = sign_checkpoint(SIGSUM_ORIGIN, 10, root, SIGSUM_KEY, SIGSUM_ORIGIN)
    assert signed == SIGSUM_CHECKPOINT


def test_checkpoint_round_trips() -> None:
    """A signed checkpoint has the three-line body and verifies back to the same values."""
    note = _signed()
    root_b64 = base64.b64encode(ROOT).decode()
    assert note.startswith(f"{ORIGIN}\n42\n{root_b64}\n\n— {ORIGIN} ")
    assert parse_and_verify(note, SIGNER.verifier) == Checkpoint(ORIGIN, 42, ROOT)
    assert parse_and_verify(note, SIGNER.verifier, origin=ORIGIN).size == 42


def test_empty_tree_and_extension_lines_round_trip() -> None:
    """Size 0 with the empty root, and opaque extension lines, survive signing and parsing."""
    note = sign_checkpoint(ORIGIN, 0, EMPTY_ROOT, SIGNER.private_key, ORIGIN, ["ext one", "2"])
    assert parse_and_verify(note, SIGNER.verifier) == Checkpoint(
        ORIGIN, 0, EMPTY_ROOT, ("ext one", "2")
    )


def _tamper_line(note: str, line: int, replacement: str) -> str:
    lines = note.split("\n")
    lines[line] = replacement
    return "\n".join(lines)


@pytest.mark.parametrize(
    ("line", "replacement"),
    [
        (0, "labledger.example/other"),
        (1, "43"),
        (1, "041"),
        (2, base64.b64encode(bytes(32)).decode()),
    ],
)
def test_tampering_with_any_body_line_is_rejected(line: int, replacement: str) -> None:
    """Changing the origin, size or root of a signed checkpoint breaks its signature."""
    with pytest.raises(BadSignature):
        parse_and_verify(_tamper_line(_signed(), line, replacement), SIGNER.verifier)


def test_tampering_with_the_signature_line_is_rejected() -> None:
    """A flipped bit in the signature, or the signer's name changed, is rejected."""
    note = _signed()
    sig_line = note.split("\n")[4]
    prefix, encoded = sig_line.rsplit(" ", 1)
    blob = bytearray(base64.b64decode(encoded))
    blob[10] ^= 0x01
    flipped = f"{prefix} {base64.b64encode(bytes(blob)).decode()}"
    with pytest.raises(BadSignature):
        parse_and_verify(_tamper_line(note, 4, flipped), SIGNER.verifier)
    with pytest.raises(MissingSignature):
        parse_and_verify(note.replace(f"— {ORIGIN} ", "— someone.else "), SIGNER.verifier)
    with pytest.raises(MalformedNote):
        parse_and_verify(_tamper_line(note, 4, sig_line[:-3]), SIGNER.verifier)


def test_signature_by_another_key_is_rejected() -> None:
    """A checkpoint signed by another key, even one using our key name, is not trusted."""
    impostor = SignerKey.generate(ORIGIN)
    forged = sign_checkpoint(ORIGIN, 42, ROOT, impostor.private_key, ORIGIN)
    with pytest.raises(MissingSignature):
        parse_and_verify(forged, SIGNER.verifier)


def test_forged_signature_under_our_key_id_is_rejected() -> None:
    """Another key's signature relabelled with our name and key ID fails verification."""
    impostor = SignerKey.generate(ORIGIN)
    forged = sign_checkpoint(ORIGIN, 42, ROOT, impostor.private_key, ORIGIN)
    prefix, encoded = forged.rstrip("\n").rsplit(" ", 1)
    relabelled = SIGNER.verifier.key_id + base64.b64decode(encoded)[4:]
    with pytest.raises(BadSignature):
        parse_and_verify(f"{prefix} {base64.b64encode(relabelled).decode()}\n", SIGNER.verifier)


def test_extra_unknown_signatures_still_verify() -> None:
    """Witness cosignatures and other unknown signature lines around ours are ignored."""
    note = _signed()
    body, signature = note.split("\n\n")
    witness = SignerKey.generate("witness.example/w1")
    cosigned = sign_note(body + "\n", witness).split("\n\n")[1]
    opaque = "— witness.example/w2 " + base64.b64encode(bytes(4 + 72)).decode() + "\n"
    extended = f"{body}\n\n{cosigned}{signature}{opaque}"
    assert parse_and_verify(extended, SIGNER.verifier) == Checkpoint(ORIGIN, 42, ROOT)


def test_checkpoint_of_another_log_is_rejected_when_the_origin_is_pinned() -> None:
    """The same key's checkpoint for another origin raises WrongOrigin naming both."""
    note = sign_checkpoint("labledger.example/other", 1, ROOT, SIGNER.private_key, ORIGIN)
    with pytest.raises(WrongOrigin) as raised:
        parse_and_verify(note, SIGNER.verifier, origin=ORIGIN)
    assert (raised.value.expected, raised.value.actual) == (ORIGIN, "labledger.example/other")


ROOT_B64 = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("body", "line"),
    [
        (f"{ORIGIN}\n42\n", None),
        (f"{ORIGIN}\n\n{ROOT_B64}\n", 2),
        (f"{ORIGIN}\n042\n{ROOT_B64}\n", 2),
        (f"{ORIGIN}\n-1\n{ROOT_B64}\n", 2),
        (f"{ORIGIN}\n+4\n{ROOT_B64}\n", 2),
        (f"{ORIGIN}\n\uff14\uff12\n{ROOT_B64}\n", 2),  # fullwidth digits are not ASCII
        (f"{ORIGIN}\n{2**64}\n{ROOT_B64}\n", 2),
        (f"{ORIGIN}\n42\nnot base64!\n", 3),
        (f"{ORIGIN}\n42\n{base64.b64encode(bytes(31)).decode()}\n", 3),
        (f"{ORIGIN}\n42\n{ROOT_B64[:-2]}9=\n", 3),  # same bytes, non-canonical base64
    ],
)
def test_signed_text_that_is_not_a_checkpoint_is_rejected(body: str, line: int | None) -> None:
    """A validly signed note whose text breaks tlog-checkpoint's rules is refused."""
    with pytest.raises(NoteRejected) as raised:
        parse_and_verify(sign_note(body, SIGNER), SIGNER.verifier)
    if line is not None:
        assert isinstance(raised.value, MalformedCheckpoint)
        assert raised.value.line == line


def test_empty_extension_line_is_rejected() -> None:
    """Extension lines must be non-empty, so a text with a blank one is not a checkpoint."""
    with pytest.raises(MalformedCheckpoint) as raised:
        parse_checkpoint_body(f"{ORIGIN}\n42\n{ROOT_B64}\next\n\nmore\n")
    assert raised.value.line == 5


@pytest.mark.parametrize(
    ("origin", "size", "root"),
    [("", 1, ROOT), ("two\nlines", 1, ROOT), (ORIGIN, -1, ROOT), (ORIGIN, 1, ROOT[:31])],
)
def test_invalid_tree_heads_are_not_signed(origin: str, size: int, root: bytes) -> None:
    """Signing refuses an empty or multi-line origin, a negative size or a short root."""
    with pytest.raises(ValueError):
        sign_checkpoint(origin, size, root, SIGNER.private_key, ORIGIN)
