"""Checking the ledger against its Merkle log and signed checkpoints (contract invariant 7).

Pure: the storage adapter (or an offline export reader) feeds entries in leaf order with the
hash it recomputes from each row; the verifier rebuilds the tree and compares every signed
checkpoint. The result is a report with data, not a string to parse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from labledger.core.checkpoint import Checkpoint, parse_and_verify
from labledger.core.errors import NoteRejected
from labledger.core.merkle import CompactRange
from labledger.core.note import VerifierKey

DEFAULT_BACKDATE_SLACK = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Problem:
    """One way the ledger disagrees with its log. `expected` is what the log committed to."""

    code: str
    detail: str
    leaf_index: int | None = None
    table: str | None = None
    entry_id: int | None = None
    expected: str | None = None
    actual: str | None = None


@dataclass(frozen=True, slots=True)
class Limitation:
    """Something `verify` could not check, and why (raw bodies gone, say): not a problem, but
    the report vouches for less than it would otherwise."""

    code: str
    detail: str
    count: int


@dataclass(slots=True)
class VerifyReport:
    entries: int = 0
    checkpoints: int = 0
    tree_size: int = 0
    root: bytes = b""
    pending: int = 0
    problems: list[Problem] = field(default_factory=list)
    limitations: list[Limitation] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    timestamp: datetime | None
    source: str  # "ledger" or the witness file it came from


def checkpoint_time(checkpoint: Checkpoint) -> datetime | None:
    for line in checkpoint.extensions:
        name, _, value = line.partition(" ")
        if name == "timestamp" and value.isdigit():
            return datetime.fromtimestamp(int(value), UTC)
    return None


def open_notes(notes: list[tuple[str, str]], key: VerifierKey) -> list[Checkpoint | str]:
    """Each (source, note)'s checkpoint once its signature by `key` checks out, or why not."""
    found: list[Checkpoint | str] = []
    for _source, note in notes:
        try:
            found.append(parse_and_verify(note, key, origin=key.name))
        except NoteRejected as exc:
            found.append(str(exc))
    return found


def open_checkpoints(
    notes: list[tuple[str, str]], key: VerifierKey, report: VerifyReport
) -> list[SignedCheckpoint]:
    """Verify each (source, note); bad ones become problems, good ones come back by size."""
    opened = []
    for (source, _note), cp in zip(notes, open_notes(notes, key), strict=True):
        if isinstance(cp, str):
            report.problems.append(Problem("checkpoint_signature", f"{source}: {cp}"))
            continue
        opened.append(SignedCheckpoint(cp, checkpoint_time(cp), source))
    # By size, then by signed time: two checkpoints of one size (a witness's copy and a later
    # re-signing) are in order whatever order their notes came in.
    opened.sort(key=lambda s: (s.checkpoint.size, s.timestamp or _NO_TIME))
    return opened


_NO_TIME = datetime.min.replace(tzinfo=UTC)


class LedgerVerifier:
    """Feed entries in leaf order; `finish()` returns the report."""

    def __init__(
        self,
        checkpoints: list[SignedCheckpoint],
        report: VerifyReport,
        backdate_slack: timedelta = DEFAULT_BACKDATE_SLACK,
        start: CompactRange | None = None,
    ) -> None:
        """`start`: the tree before the first entry fed (an archive's leaf range begins there)."""
        self._pending = list(checkpoints)
        self._report = report
        self._frontier = start if start is not None else CompactRange()
        self._slack = backdate_slack
        self._last_time: datetime | None = None
        self._earliest: datetime | None = None  # entries before this are back-dated
        self._check_times(checkpoints)
        self._settle()

    def _problem(self, code: str, detail: str, **where: object) -> None:
        self._report.problems.append(Problem(code, detail, **where))  # type: ignore[arg-type]

    def _check_times(self, checkpoints: list[SignedCheckpoint]) -> None:
        latest: SignedCheckpoint | None = None
        for cp in checkpoints:
            if cp.timestamp is None:
                continue
            if latest is not None and latest.timestamp and cp.timestamp < latest.timestamp:
                self._problem(
                    "checkpoint_order",
                    f"checkpoint of size {cp.checkpoint.size} is signed earlier than the one of "
                    f"size {latest.checkpoint.size}",
                )
            latest = cp

    def add(
        self,
        index: int,
        table: str,
        entry_id: int,
        logged_hash: bytes | None,
        row_hash: bytes | None,
        entry_time: datetime | None,
    ) -> None:
        frontier, earliest = self._frontier, self._earliest
        if (
            index != frontier.size
            or row_hash is None
            or (logged_hash is not None and row_hash != logged_hash)
            or (entry_time is not None and earliest is not None and entry_time < earliest)
        ):
            self._find_problems(index, table, entry_id, logged_hash, row_hash, entry_time)
        leaf = row_hash if row_hash is not None else logged_hash
        frontier.append(leaf if leaf is not None else b"\0" * 32)
        self._report.entries += 1
        if self._pending and self._pending[0].checkpoint.size <= frontier.size:
            self._settle()

    def _find_problems(
        self,
        index: int,
        table: str,
        entry_id: int,
        logged_hash: bytes | None,
        row_hash: bytes | None,
        entry_time: datetime | None,
    ) -> None:
        where = {"leaf_index": index, "table": table, "entry_id": entry_id}
        if index != self._frontier.size:
            self._problem("gap", f"leaf {self._frontier.size} missing; next is {index}", **where)
        if row_hash is None:
            self._problem("missing_row", f"{table} {entry_id} is logged but gone", **where)
        elif logged_hash is not None and row_hash != logged_hash:
            self._problem(
                "leaf_mismatch",
                f"{table} {entry_id} no longer hashes to its logged leaf",
                expected=logged_hash.hex(),
                actual=row_hash.hex(),
                **where,
            )
        last = self._last_time
        if entry_time is not None and last is not None and entry_time < last - self._slack:
            self._problem(
                "backdated",
                f"{table} {entry_id} claims {entry_time.isoformat()}, before a checkpoint "
                f"signed at {last.isoformat()} that does not contain it",
                **where,
            )

    def _settle(self) -> None:
        while self._pending and self._pending[0].checkpoint.size <= self._frontier.size:
            signed = self._pending.pop(0)
            if signed.checkpoint.size == self._frontier.size:
                self._compare(signed, self._frontier.root())
            self._note_time(signed)

    def _note_time(self, signed: SignedCheckpoint) -> None:
        if signed.timestamp is not None:
            self._last_time = max(self._last_time or signed.timestamp, signed.timestamp)
            self._earliest = self._last_time - self._slack

    def _compare(self, signed: SignedCheckpoint, root: bytes) -> None:
        cp = signed.checkpoint
        self._report.checkpoints += 1
        if root != cp.root:
            self._problem(
                "checkpoint_root",
                f"the entries do not rebuild the root signed in {signed.source} at size {cp.size}",
                leaf_index=cp.size - 1,
                expected=cp.root.hex(),
                actual=root.hex(),
            )

    def finish(self) -> VerifyReport:
        for signed in self._pending:
            self._problem(
                "rewound",
                f"{signed.source} signed a tree of {signed.checkpoint.size} entries; "
                f"only {self._frontier.size} are in the log (truncated or restored from backup)",
                expected=str(signed.checkpoint.size),
                actual=str(self._frontier.size),
            )
        self._pending = []
        self._report.tree_size = self._frontier.size
        self._report.root = self._frontier.root()
        return self._report
