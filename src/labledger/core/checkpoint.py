"""Signed tree heads in the C2SP checkpoint format: https://c2sp.org/tlog-checkpoint.

A checkpoint is a signed note (labledger.core.note) whose text is
`<origin>\\n<tree size in decimal>\\n<base64 root hash>\\n`, then optional
non-empty extension lines. We sign it with Ed25519 (signature type 0x01), the
type Go's sumdb/note and most deployed logs and witnesses verify.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from labledger.core.errors import (
    MalformedCheckpoint,
    WrongOrigin,
)
from labledger.core.merkle import HASH_SIZE
from labledger.core.note import SignerKey, VerifierKey, open_note, sign_note

# "ASCII decimal ... with no leading zeroes"; Go's parsers stop at uint64.
_TREE_SIZE = re.compile(r"0|[1-9][0-9]*")
_MAX_TREE_SIZE = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: `size` leaves of log `origin` have Merkle root `root` (32 bytes)."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or not all(_is_line(x) for x in (self.origin, *self.extensions)):
            raise ValueError("origin and extension lines are non-empty single lines")
        if not 0 <= self.size <= _MAX_TREE_SIZE:
            raise ValueError(f"tree size {self.size} is out of range")
        if len(self.root) != HASH_SIZE:
            raise ValueError(f"a root hash is {HASH_SIZE} bytes")

    def body(self) -> str:
        """The note text: the bytes that the signature covers."""
        root = base64.b64encode(self.root).decode()
        return "".join(
            f"{line}\n" for line in (self.origin, str(self.size), root, *self.extensions)
        )


def _is_line(text: str) -> bool:
    return bool(text) and not any(c < " " for c in text)


def parse_checkpoint_body(text: str) -> Checkpoint:
    """The checkpoint in a note text, *unverified*: callers want parse_and_verify."""
    if not text.endswith("\n"):
        raise MalformedCheckpoint("the text does not end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedCheckpoint("fewer than three lines: origin, tree size, root hash")
    for number, line in enumerate(lines, start=1):
        if not line:
            raise MalformedCheckpoint("empty line", number)
    origin, size_line, root_line, *extensions = lines
    try:
        return Checkpoint(origin, _parse_size(size_line), _parse_root(root_line), tuple(extensions))
    except ValueError as exc:  # an unverified text may hold control characters
        raise MalformedCheckpoint(str(exc)) from exc


def _parse_size(line: str) -> int:
    if not _TREE_SIZE.fullmatch(line) or int(line) > _MAX_TREE_SIZE:
        raise MalformedCheckpoint(f"tree size {line!r} is not a decimal without leading zeros", 2)
    return int(line)


def _parse_root(line: str) -> bytes:
    try:
        root = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        root = b""
    # Only the canonical encoding, so one tree head has exactly one text.
    if len(root) != HASH_SIZE or base64.b64encode(root).decode() != line:
        raise MalformedCheckpoint(f"root hash {line!r} is not base64 of {HASH_SIZE} bytes", 3)
    return root


def sign_checkpoint(
    origin: str,
    size: int,
    root: bytes,
    private_key: Ed25519PrivateKey,
    key_name: str,
    extensions: Sequence[str] = (),
) -> str:
    """The signed note of a checkpoint. tlog-checkpoint: key_name SHOULD equal origin."""
    checkpoint = Checkpoint(origin, size, root, tuple(extensions))
    return sign_note(checkpoint.body(), SignerKey(key_name, private_key))


def parse_and_verify(
    note_text: str | bytes, verifier_key: VerifierKey, *, origin: str | None = None
) -> Checkpoint:
    """The checkpoint in `note_text` once signed by `verifier_key` (and of `origin`, if given).

    Signatures by other keys (witnesses, a rotated key) are ignored. Raises a
    NoteRejected: MalformedNote, MissingSignature, BadSignature,
    MalformedCheckpoint or WrongOrigin.
    """
    checkpoint = parse_checkpoint_body(open_note(note_text, verifier_key))
    if origin is not None and checkpoint.origin != origin:
        raise WrongOrigin(origin, checkpoint.origin)
    return checkpoint
