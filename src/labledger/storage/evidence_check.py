"""`verify`'s second question: was each row made by labledger from its evidence?

core/evidence.py says what each row must be; this reads the rows (the leaf readers of
storage/leaf_rows.py, lenient as `verify` needs), the raw bodies and the audit events, and
files what does not hold as a Problem, what cannot be checked any more as a Limitation.
"""

from __future__ import annotations

import hashlib
import zlib
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, select

from labledger.core.errors import MalformedPayload
from labledger.core.evidence import (
    FROM_PUSH,
    Row,
    attempt_mismatch,
    differing,
    first_plans,
    push_columns,
    push_from_row,
    session_as_it_was,
)
from labledger.core.model import LabSession, NewAttempt, Push
from labledger.core.verify import Limitation, Problem, VerifyReport
from labledger.forges import PUSH_PARSERS, recorded_by
from labledger.forges.gitlab import PUSH_EVENTS as GITLAB_PUSH_EVENTS
from labledger.storage.companions import (
    Companions,
    check_companion,
    companions_of,
    newest_purged_audit_leaf,
    readable,
)
from labledger.storage.leaf_rows import (
    IN_CHUNK,
    all_entry_rows,
    entry_row_batches,
    lenient_rows_among,
)
from labledger.storage.rows import session_from_row
from labledger.storage.tables import deliveries

# The event a push delivery was recorded under: GitHub's and Gitea's `push`, GitLab's hooks.
PUSH_EVENTS = frozenset({"push", *GITLAB_PUSH_EVENTS})


def check_evidence(conn: Connection, report: VerifyReport, check_bodies: bool) -> None:
    """Every session, deadline change, push and attempt against the evidence it came from.
    A row already reported (edited, unlogged) is not reported again: one row, one problem."""
    known = {(p.table, p.entry_id) for p in report.problems}
    found = VerifyReport()
    _check_rows(conn, found, check_bodies)
    report.problems += [p for p in found.problems if (p.table, p.entry_id) not in known]
    report.limitations += found.limitations


def _check_rows(conn: Connection, report: VerifyReport, check_bodies: bool) -> None:
    companions = companions_of(conn)
    purged_before = newest_purged_audit_leaf(conn)
    changes: dict[int, list[Row]] = defaultdict(list)
    for change in readable(all_entry_rows(conn, "session_change")):
        changes[change["session_id"]].append(change)
        expected = {
            "occurred_at": change["changed_at"],
            "actor": change["actor"],
            "target_id": str(change["session_id"]),
            "details.reason": change["reason"],
            "details.due_at": change["due_at"],
            "details.closes_at": change["closes_at"],
        }
        check_companion(conn, report, "session_change", change, expected, companions, purged_before)
    sessions: dict[int, list[tuple[LabSession, datetime]]] = {}
    for row in readable(all_entry_rows(conn, "session")):
        session = session_from_row(SimpleNamespace(**row))
        sessions[session.id] = session_as_it_was(session, changes[session.id])
        expected = {
            "occurred_at": row["created_at"],
            "details.lab_id": row["lab_id"],
            "details.repository_id": row["repository_id"],
        }
        check_companion(conn, report, "session", row, expected, companions, purged_before)
    pushes = _PushCheck(conn, report, sessions, check_bodies)
    for batch in entry_row_batches(conn, "push"):
        pushes.check(batch, companions, purged_before)
    pushes.file_limitations()


class _PushCheck:
    """Pushes a batch at a time, each with its delivery, raw body and attempts."""

    def __init__(
        self,
        conn: Connection,
        report: VerifyReport,
        sessions: dict[int, list[tuple[LabSession, datetime]]],
        check_bodies: bool,
    ) -> None:
        self._conn, self._report, self._sessions = conn, report, sessions
        self._check_bodies = check_bodies
        self._unbodied = 0
        self._unparsed = 0

    def check(self, batch: list[dict[str, Any]], companions: Companions, purged: int) -> None:
        pushes = list(readable(iter(batch)))
        wanted = sorted({p["delivery_pk"] for p in pushes})
        delivered = {d["id"]: d for d in lenient_rows_among(self._conn, "delivery", "id", wanted)}
        by_push: dict[int, list[dict[str, Any]]] = defaultdict(list)
        pushed = [p["id"] for p in pushes]
        for attempt in readable(iter(lenient_rows_among(self._conn, "attempt", "push_id", pushed))):
            by_push[attempt["push_id"]].append(attempt)
        bodies = self._bodies(delivered) if self._check_bodies else {}
        for push in pushes:
            delivery = delivered[push["delivery_pk"]]
            try:
                self._check_push(push, delivery, bodies.get(delivery["id"]), by_push[push["id"]])
            except TypeError:  # a time no datetime holds: the leaf check names that row
                continue
            check_companion(self._conn, self._report, "push", push,
                            {"target_id": delivery["delivery_id"],
                             "occurred_at": delivery["received_at"]},
                            companions, purged)  # fmt: skip

    def _check_push(
        self, push: Row, delivery: Row, body: bytes | None, made: list[dict[str, Any]]
    ) -> None:
        derived = self._derive(push, delivery, body)
        plans: dict[int, list[dict[str, NewAttempt]]] = {}
        for attempt in made:
            session_id = attempt["session_id"]
            if session_id not in plans:
                plans[session_id] = self._plans(push, delivery, derived, session_id)
            self._check_attempt(attempt, plans[session_id], derived is not None)

    def _derive(self, push: Row, delivery: Row, body: bytes | None) -> Push | None:
        """The push its raw body makes, when it is kept; a row that differs is reported."""
        parse = PUSH_PARSERS.get(recorded_by(delivery["forge"], body or b""))
        if body is None or parse is None:
            self._unbodied += body is None
            self._unparsed += body is not None
            return None
        try:
            parsed = parse(body)
            wrong = differing("push", push, {"forge": delivery["forge"], **push_columns(parsed)})
        except MalformedPayload as exc:
            parsed, wrong = None, (f"body: {exc}",)
        if delivery["event"] not in PUSH_EVENTS:
            wrong = (*wrong, "event")
        if wrong:
            self._problem("push_not_derived", "pushes", push["id"], "its raw body", wrong)
        return parsed

    def _plans(
        self, push: Row, delivery: Row, derived: Push | None, session_id: int
    ) -> list[dict[str, NewAttempt]]:
        """The push's plans for one session under each of its deadlines; none when the
        session is of another repository (an attempt there was never planned)."""
        made = derived or push_from_row(push)
        sessions = [
            (s, took_it_at)
            for s, took_it_at in self._sessions.get(session_id, [])
            if s.spec.forge == delivery["forge"] and s.spec.repository_id == made.repository_id
        ]
        received_at = delivery["received_at"]
        return first_plans(made, sessions, push["id"], push["delivery_pk"], received_at)

    def _check_attempt(
        self, attempt: Row, plans: list[dict[str, NewAttempt]], from_body: bool
    ) -> None:
        wrong = attempt_mismatch(attempt, plans, None if from_body else FROM_PUSH)
        if not plans:
            wrong = ("session_id",)
        if wrong is None:
            return
        source = "its push's raw body" if from_body else "its push"
        self._problem("attempt_not_derived", "attempts", attempt["id"], source, wrong)

    def _problem(
        self, code: str, table: str, entry_id: int, source: str, wrong: tuple[str, ...]
    ) -> None:
        self._report.problems.append(
            Problem(
                code,
                f"{table} {entry_id} is not what labledger makes of {source} "
                f"({', '.join(wrong)}): appended or altered behind labledger's back?",
                table=table,
                entry_id=entry_id,
                actual=", ".join(wrong),
            )
        )

    def _bodies(self, delivered: Mapping[int, Row]) -> dict[int, bytes]:
        """Each kept raw body that still hashes to its recorded SHA-256 (one that does not is
        reported as body_mismatch, and derives nothing)."""
        ids = list(delivered)
        found: dict[int, bytes] = {}
        query = select(deliveries.c.id, deliveries.c.body_zlib)
        for at in range(0, len(ids), IN_CHUNK):
            for row in self._conn.execute(
                query.where(deliveries.c.id.in_(ids[at : at + IN_CHUNK]))
            ):
                body = _inflated(row.body_zlib, delivered[row.id]["body_size"])
                recorded = _as_bytes(delivered[row.id]["body_sha256"])
                if body is not None and hashlib.sha256(body).digest() == recorded:
                    found[row.id] = body
        return found

    def file_limitations(self) -> None:
        if self._unbodied:
            why = "retention dropped their raw bodies" if self._check_bodies else "--skip-bodies"
            self._report.limitations.append(
                Limitation(
                    "bodies_gone",
                    f"{self._unbodied} pushes and their attempts checked "
                    f"against their push rows only, not re-derived: {why}",
                    self._unbodied,
                )
            )
        if self._unparsed:
            self._report.limitations.append(
                Limitation(
                    "no_parser",
                    f"{self._unparsed} pushes of a forge verify cannot "
                    "parse: checked against their push rows only",
                    self._unparsed,
                )
            )


def _inflated(stored: object, size: object) -> bytes | None:
    """The raw body, inflated no further than its recorded size (and one byte to tell)."""
    if not isinstance(stored, bytes | bytearray | memoryview) or not stored:
        return None
    if not isinstance(size, int):
        return None
    try:
        body = zlib.decompressobj().decompress(bytes(stored), size + 1)
    except zlib.error:
        return None
    return body if len(body) == size else None


def _as_bytes(value: object) -> bytes | None:
    """Bytes as stored; None for what only a change behind labledger's back stores there."""
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else None
