"""Receipts: one entry's leaf bytes, its inclusion proof and the signed checkpoint.

A receipt is checked with nothing but the log's public key, and binds everything a person
reads in it: the readable entry must be exactly the leaf re-derived from it by the ledger's
canonical encoding (so an edited `pushed_at` names itself), `leaf_hash` must be the leaf's
hash, the proof must lead from the leaf at `leaf_index` to the root of the checkpoint, and
the checkpoint must be signed by the key. A field the signature does not cover is refused.
Receipts of format v1 issued before these checks existed pass them unchanged.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from labledger.core.checkpoint import Checkpoint, parse_and_verify
from labledger.core.errors import (
    InvalidProof,
    MalformedReceipt,
    NoteRejected,
    ReceiptRejected,
)
from labledger.core.leaves import LEAF_VERSION, canonical_json, parse_leaf
from labledger.core.merkle import leaf_hash, verify_inclusion
from labledger.core.note import VerifierKey

RECEIPT_FORMAT = "labledger-receipt/v1"
FIELDS = frozenset(
    ("format", "leaf_index", "tree_size", "entry", "leaf", "leaf_hash", "inclusion_proof",
     "checkpoint")
)  # fmt: skip
ENTRY_FIELDS = frozenset(("kind", "content"))


@dataclass(frozen=True, slots=True)
class Receipt:
    leaf_index: int
    tree_size: int
    leaf: bytes
    proof: tuple[bytes, ...]
    checkpoint_note: str

    def to_json(self) -> dict[str, Any]:
        kind, content = parse_leaf(self.leaf)
        return {
            "format": RECEIPT_FORMAT,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "entry": {"kind": kind, "content": content},
            "leaf": base64.b64encode(self.leaf).decode(),
            "leaf_hash": "sha256:" + leaf_hash(self.leaf).hex(),
            "inclusion_proof": [base64.b64encode(h).decode() for h in self.proof],
            "checkpoint": self.checkpoint_note,
        }

    @classmethod
    def from_json(cls, data: Any) -> Receipt:
        """The receipt in `data`, once its readable entry and leaf hash match its leaf."""
        if not isinstance(data, dict) or data.get("format") != RECEIPT_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise MalformedReceipt(f"not a labledger receipt: format {found!r}")
        try:
            receipt = cls(
                leaf_index=_int(data["leaf_index"]),
                tree_size=_int(data["tree_size"]),
                leaf=base64.b64decode(data["leaf"], validate=True),
                proof=tuple(base64.b64decode(h, validate=True) for h in data["inclusion_proof"]),
                checkpoint_note=_str(data["checkpoint"]),
            )
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            raise MalformedReceipt(f"not a labledger receipt: {exc}") from None
        _check_readable(data, receipt.leaf)
        return receipt

    @classmethod
    def from_file_bytes(cls, raw: bytes) -> Receipt:
        """A receipt file; a key given twice (a reader sees one value, JSON parsers keep the
        other) is refused like an edited field."""
        try:
            data = json.loads(raw.decode("utf-8"), object_pairs_hook=_refuse_duplicates)
        except ValueError as exc:  # UnicodeDecodeError is one too
            reason = str(exc).splitlines()[0]
            raise MalformedReceipt(
                f"not a labledger receipt: not JSON text ({reason}); a receipt is what "
                "`labledger prove attempt ID --out FILE` writes"
            ) from None
        return cls.from_json(data)


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, value in pairs:
        if name in found:
            where = name if name in FIELDS else f"entry.{name}"
            if name not in FIELDS | ENTRY_FIELDS:
                where = f"entry.content.{name}"
            raise ReceiptRejected(where, "appears twice in the file")
        found[name] = value
    return found


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not text")
    return value


def _check_readable(data: dict[str, Any], leaf: bytes) -> None:
    """Every field a person reads is the leaf's, or the receipt is rejected naming it."""
    if extra := sorted(set(data) - FIELDS):
        raise ReceiptRejected(extra[0], "is not part of a receipt; nothing signed covers it")
    entry = data.get("entry")
    if not isinstance(entry, dict):
        raise ReceiptRejected("entry", "is missing or not an object")
    if extra := sorted(set(entry) - ENTRY_FIELDS):
        raise ReceiptRejected(f"entry.{extra[0]}", "is not part of a receipt entry")
    try:
        kind, signed = parse_leaf(leaf)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ReceiptRejected("leaf", f"is not a labledger leaf ({exc})") from None
    if entry.get("kind") != kind:
        raise ReceiptRejected("entry.kind", f"says {entry.get('kind')!r}, the leaf {kind!r}")
    _check_content(entry.get("content"), signed)
    if _rederived(kind, signed) != leaf:
        raise ReceiptRejected("leaf", "is not in the ledger's canonical encoding")
    if data.get("leaf_hash") != "sha256:" + leaf_hash(leaf).hex():
        raise ReceiptRejected("leaf_hash", "is not the hash of the leaf")


def _check_content(content: Any, signed: dict[str, Any]) -> None:
    if not isinstance(content, dict):
        raise ReceiptRejected("entry.content", "is missing or not an object")
    for name in sorted(set(content) | set(signed)):
        if name not in signed:
            raise ReceiptRejected(f"entry.content.{name}", "is not in the leaf")
        if name not in content:
            raise ReceiptRejected(f"entry.content.{name}", "is in the leaf but not shown")
        # Compared as canonical JSON, so that 1, 1.0 and true stay different values.
        if _canonical(content[name]) != canonical_json(signed[name]):
            raise ReceiptRejected(
                f"entry.content.{name}", f"is not the leaf's value {signed[name]!r}"
            )


def _canonical(value: Any) -> bytes | None:
    try:
        return canonical_json(value)
    except (TypeError, ValueError):
        return None  # a float: never in a leaf


def _rederived(kind: str, content: dict[str, Any]) -> bytes:
    return f"{LEAF_VERSION}\n{kind}\n".encode() + canonical_json(content)


def verify_receipt(receipt: Receipt, key: VerifierKey) -> Checkpoint:
    """Return the checkpoint the entry is proven to be in, or raise ReceiptRejected."""
    try:
        checkpoint = parse_and_verify(receipt.checkpoint_note, key, origin=key.name)
    except NoteRejected as exc:
        raise ReceiptRejected("checkpoint", f"{exc}") from exc
    if checkpoint.size != receipt.tree_size:
        raise ReceiptRejected(
            "tree_size", f"is {receipt.tree_size}, the signed checkpoint's {checkpoint.size}"
        )
    try:
        verify_inclusion(
            leaf_hash(receipt.leaf),
            receipt.leaf_index,
            checkpoint.size,
            list(receipt.proof),
            checkpoint.root,
        )
    except InvalidProof as exc:
        raise ReceiptRejected(
            "inclusion_proof",
            f"does not lead from this leaf at leaf_index {receipt.leaf_index} to the root "
            f"signed for tree_size {checkpoint.size} ({exc})",
        ) from exc
    return checkpoint
