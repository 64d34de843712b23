"""Signed times must grow with the tree: a bigger tree signed before a smaller one is out of
order, while two checkpoints of one size (a witness's copy and a later re-signing) are not."""

from __future__ import annotations

from labledger.core.checkpoint import sign_checkpoint
from labledger.core.verify import LedgerVerifier, VerifyReport, open_checkpoints
from tests.support import SIGNER

ORIGIN = SIGNER.name
T = 1_760_000_000


def _note(size: int, timestamp: int, root: bytes = b"\1" * 32) -> str:
    return sign_checkpoint(
        ORIGIN, size, root, SIGNER.private_key, SIGNER.name, [f"timestamp {timestamp}"]
    )


def _order_problems(*notes: tuple[str, str]) -> list[str]:
    report = VerifyReport()
    LedgerVerifier(open_checkpoints(list(notes), SIGNER.verifier, report), report)
    return [p.detail for p in report.problems if p.code == "checkpoint_order"]


def test_a_bigger_tree_signed_before_a_smaller_one_is_out_of_order() -> None:
    """Size 4 signed five seconds before size 3: reported."""
    problems = _order_problems(("ledger", _note(3, T + 5)), ("ledger", _note(4, T)))
    assert len(problems) == 1 and "size 4" in problems[0]


def test_a_witness_signed_before_a_resigning_of_the_same_size_is_not_out_of_order() -> None:
    """The ledger's size-3 checkpoint signed after a witness's size-3 copy: times agree."""
    ledger, witness = _note(3, T + 5, b"\2" * 32), _note(3, T)
    assert _order_problems(("checkpoint 3", ledger), ("witness.note", witness)) == []
    assert _order_problems(("checkpoint 3", witness), ("witness.note", ledger)) == []
