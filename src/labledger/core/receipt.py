"""Receipts: one entry's leaf bytes, its inclusion proof and the signed checkpoint.

A receipt is checked with nothing but the log's public key: the leaf hash is recomputed
from the bytes, the proof is verified against the checkpoint's root, and the checkpoint's
signature against the key.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from labledger.core.checkpoint import Checkpoint, parse_and_verify
from labledger.core.errors import LedgerError
from labledger.core.leaves import parse_leaf
from labledger.core.merkle import leaf_hash, verify_inclusion
from labledger.core.note import VerifierKey

RECEIPT_FORMAT = "labledger-receipt/v1"


class MalformedReceipt(LedgerError):
    pass


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
        try:
            if data["format"] != RECEIPT_FORMAT:
                raise MalformedReceipt(f"unknown receipt format {data['format']!r}")
            return cls(
                leaf_index=_int(data["leaf_index"]),
                tree_size=_int(data["tree_size"]),
                leaf=base64.b64decode(data["leaf"], validate=True),
                proof=tuple(base64.b64decode(h, validate=True) for h in data["inclusion_proof"]),
                checkpoint_note=str(data["checkpoint"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedReceipt(f"not a labledger receipt: {exc}") from None


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer")
    return value


def verify_receipt(receipt: Receipt, key: VerifierKey) -> Checkpoint:
    """Return the checkpoint the entry is proven to be in, or raise (NoteRejected, InvalidProof)."""
    checkpoint = parse_and_verify(receipt.checkpoint_note, key, origin=key.name)
    if checkpoint.size != receipt.tree_size:
        raise MalformedReceipt(
            f"receipt claims tree size {receipt.tree_size}, its checkpoint {checkpoint.size}"
        )
    verify_inclusion(
        leaf_hash(receipt.leaf),
        receipt.leaf_index,
        checkpoint.size,
        list(receipt.proof),
        checkpoint.root,
    )
    return checkpoint
