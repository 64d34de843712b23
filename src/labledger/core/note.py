"""C2SP signed notes with Ed25519 keys: https://c2sp.org/signed-note (v1.0.0).

A note is a text ending in a newline, a blank line, then signature lines
`— <key name> <base64(4-byte key ID || signature)>`. Key strings use the
encoding of Go's golang.org/x/mod/sumdb/note, so Go tools accept our keys:
verifier key `<name>+<hex key ID>+<base64(0x01 || 32-byte public key)>` and
signer key `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || 32-byte seed)>`.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from hashlib import sha256

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from labledger.core.errors import (
    BadSignature,
    MalformedKey,
    MalformedNote,
    MissingSignature,
)

ED25519 = 0x01  # the signature type byte assigned to Ed25519 by signed-note
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
# Go's note.Open stops at 100; the spec asks verifiers to accept at least 16.
MAX_SIGNATURES = 100
_PRIVATE_PREFIX = "PRIVATE+KEY+"
_KEY_ID_HEX = re.compile(r"[0-9a-fA-F]{8}")  # Go accepts either case


def is_valid_key_name(name: str) -> bool:
    """Key names are non-empty, with no Unicode space and no plus (signed-note "Format")."""
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(key name || 0x0A || 0x01 || 32-byte Ed25519 public key)[:4], as signed-note
    recommends and Go's sumdb/note computes."""
    return sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


@dataclass(frozen=True, slots=True)
class VerifierKey:
    """A named Ed25519 public key that notes are checked against."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name):
            raise MalformedKey(f"invalid key name {self.name!r}")
        if len(self.public_key) != 32:
            raise MalformedKey("an Ed25519 public key is 32 bytes")

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public_key)

    def encode(self) -> str:
        material = base64.b64encode(bytes([ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{material}"

    @classmethod
    def parse(cls, vkey: str) -> VerifierKey:
        name, _, rest = vkey.strip().partition("+")
        id_hex, _, material = rest.partition("+")
        key = cls(name, _decode_key_material(material))
        _check_key_id(id_hex, key.key_id)
        return key

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


# eq=False: cryptography's key objects compare by identity, so field-wise
# equality would only mislead; compare `.verifier` instead.
@dataclass(frozen=True, slots=True, eq=False)
class SignerKey:
    """A named Ed25519 private key. Its `encode()` is a secret."""

    name: str
    private_key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name):
            raise MalformedKey(f"invalid key name {self.name!r}")

    @classmethod
    def generate(cls, name: str) -> SignerKey:
        return cls(name, Ed25519PrivateKey.generate())

    @property
    def verifier(self) -> VerifierKey:
        raw = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return VerifierKey(self.name, raw)

    def encode(self) -> str:
        seed = self.private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        material = base64.b64encode(bytes([ED25519]) + seed).decode()
        return f"{_PRIVATE_PREFIX}{self.name}+{self.verifier.key_id.hex()}+{material}"

    @classmethod
    def parse(cls, skey: str) -> SignerKey:
        skey = skey.strip()
        if not skey.startswith(_PRIVATE_PREFIX):
            raise MalformedKey(f"a signer key starts with {_PRIVATE_PREFIX!r}")
        name, _, rest = skey.removeprefix(_PRIVATE_PREFIX).partition("+")
        id_hex, _, material = rest.partition("+")
        key = cls(name, Ed25519PrivateKey.from_private_bytes(_decode_key_material(material)))
        # The ID is derived from the public key, so a wrong one means a mangled key.
        _check_key_id(id_hex, key.verifier.key_id)
        return key

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


def _decode_key_material(material: str) -> bytes:
    raw = _b64decode(material)
    if raw is None or len(raw) != 33:
        raise MalformedKey("key material is base64 of a type byte and 32 key bytes")
    if raw[0] != ED25519:
        raise MalformedKey(f"unsupported signature type {raw[0]:#04x}")
    return raw[1:]


def _check_key_id(id_hex: str, expected: bytes) -> None:
    if not _KEY_ID_HEX.fullmatch(id_hex) or bytes.fromhex(id_hex) != expected:
        raise MalformedKey(f"key ID {id_hex!r} does not match the key (expected {expected.hex()})")


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def sign_note(text: str, signer: SignerKey) -> str:
    """The signed note of `text` (which must end in a newline) with one signature line."""
    if not text.endswith("\n"):
        raise ValueError("a note text ends with a newline")
    problem = _syntax_problem(text)
    if problem:
        raise ValueError(f"the text cannot be a note: {problem}")
    blob = signer.verifier.key_id + signer.sign(text.encode())
    return f"{text}\n{SIGNATURE_PREFIX}{signer.name} {base64.b64encode(blob).decode()}\n"


def open_note(note: str | bytes, verifier: VerifierKey) -> str:
    """The text of `note` once a signature by `verifier` checks out.

    As signed-note requires: signatures by other keys (another name *or* another
    key ID) are ignored, a failing signature by the trusted key rejects the whole
    note (BadSignature), and a note it did not sign is rejected (MissingSignature).
    """
    message = _decode(note)
    problem = _syntax_problem(message)
    if problem:
        raise MalformedNote(problem)
    # The text runs to the *last* blank line; texts may contain blank lines.
    split = message.rfind("\n\n")
    if split < 0:
        raise MalformedNote("no blank line before the signatures")
    text, signature_block = message[: split + 1], message[split + 2 :]
    if not signature_block.endswith("\n"):
        raise MalformedNote("the signature block does not end with a newline")
    lines = signature_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNote(f"more than {MAX_SIGNATURES} signatures")
    signatures = [_parse_signature_line(line) for line in lines]
    mine = [sig for name, sig in signatures if (name, sig[:4]) == (verifier.name, verifier.key_id)]
    if not mine:
        raise MissingSignature(verifier.name, verifier.key_id)
    # Go's note.Open checks only the first of repeated lines by one key.
    if not verifier.verify(text.encode(), mine[0][4:]):
        raise BadSignature(verifier.name, verifier.key_id)
    return text


def _decode(note: str | bytes) -> str:
    try:
        if isinstance(note, bytes):
            return note.decode("utf-8")
        note.encode("utf-8")  # a str can still hold lone surrogates
    except UnicodeError as exc:
        raise MalformedNote("not valid UTF-8") from exc
    return note


def _syntax_problem(message: str) -> str | None:
    if any(c < " " and c != "\n" for c in message):
        return "an ASCII control character other than newline"
    return None


def _parse_signature_line(line: str) -> tuple[str, bytes]:
    if not line.startswith(SIGNATURE_PREFIX):
        raise MalformedNote(f"not a signature line: {line!r}")
    name, _, encoded = line.removeprefix(SIGNATURE_PREFIX).partition(" ")
    blob = _b64decode(encoded) if encoded else None
    if not is_valid_key_name(name) or blob is None or len(blob) < 5:
        raise MalformedNote(f"not a signature line: {line!r}")
    return name, blob
