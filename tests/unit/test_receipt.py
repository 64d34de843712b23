"""Receipts checked with only the public key reject every lie a server could tell."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from labledger.core.checkpoint import sign_checkpoint
from labledger.core.errors import LedgerError, MalformedReceipt
from labledger.core.leaves import leaf_bytes, parse_leaf
from labledger.core.merkle import MerkleTree, leaf_hash
from labledger.core.note import SignerKey
from labledger.core.receipt import Receipt, verify_receipt
from tests.support import SIGNER

KEY = SIGNER.verifier


def _audit(i: int) -> bytes:
    row = {
        "id": i,
        "occurred_at": datetime(2026, 11, 25, tzinfo=UTC),
        "actor": "cli",
        "action": "session.created",
        "target_type": "session",
        "target_id": str(i),
        "details": {"n": i},
    }
    return leaf_bytes("audit", row)


def _receipt(index: int = 5, size: int = 11, signer: SignerKey = SIGNER) -> Receipt:
    leaves = [_audit(i) for i in range(size)]
    tree = MerkleTree([leaf_hash(x) for x in leaves])
    note = sign_checkpoint(signer.name, size, tree.root(), signer.private_key, signer.name)
    return Receipt(index, size, leaves[index], tuple(tree.inclusion_proof(index)), note)


def _flip(data: bytes, at: int = 0) -> bytes:
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


def test_a_true_receipt_verifies_and_round_trips_through_json() -> None:
    """The receipt a log issues checks out, also after JSON serialisation."""
    receipt = _receipt()
    assert verify_receipt(Receipt.from_json(receipt.to_json()), KEY).size == 11
    assert parse_leaf(receipt.leaf)[1]["id"] == 5


@pytest.mark.parametrize(
    "lie",
    [
        pytest.param(
            lambda r: dataclasses.replace(r, leaf=_flip(r.leaf, 40)), id="flipped leaf bit"
        ),
        pytest.param(
            lambda r: dataclasses.replace(r, proof=(_flip(r.proof[0]), *r.proof[1:])),
            id="flipped proof bit",
        ),
        pytest.param(
            lambda r: dataclasses.replace(r, leaf_index=r.leaf_index + 1), id="wrong index"
        ),
        pytest.param(
            lambda r: dataclasses.replace(r, tree_size=r.tree_size - 1), id="wrong tree size"
        ),
        pytest.param(lambda r: dataclasses.replace(r, proof=r.proof[:-1]), id="missing hash"),
        pytest.param(
            lambda r: dataclasses.replace(r, proof=(*r.proof, r.proof[0])), id="extra hash"
        ),
        pytest.param(lambda r: dataclasses.replace(r, leaf=_audit(6)), id="another entry"),
        pytest.param(
            lambda r: _receipt(signer=SignerKey.generate(SIGNER.name)), id="signed by another key"
        ),
        pytest.param(
            lambda r: dataclasses.replace(
                r, checkpoint_note=r.checkpoint_note.replace("\n11\n", "\n12\n")
            ),
            id="edited checkpoint",
        ),
    ],
)
def test_a_lying_receipt_is_rejected(lie: object) -> None:
    """Each corruption of a receipt makes verification fail with a labledger error."""
    with pytest.raises(LedgerError):
        verify_receipt(lie(_receipt()), KEY)  # type: ignore[operator]


def test_malformed_receipt_json_is_refused() -> None:
    """A file that is not a receipt is refused with a clear error, not a crash."""
    data = _receipt().to_json()
    for broken in (
        {**data, "format": "other"},
        {**data, "leaf_index": "5"},
        {"format": data["format"]},
    ):
        with pytest.raises(MalformedReceipt):
            Receipt.from_json(broken)
