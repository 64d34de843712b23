"""The ledger a run should have produced, compared row by row with the one it did produce."""

from __future__ import annotations

import fnmatch
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

from labledger.core.verify import VerifyReport
from labledger.storage.merkle_log import SqlLog
from labledger.storage.verification import verify_database
from tests.reliability.traffic import PlannedDelivery
from tests.support import SIGNER

SETTLE_TIMEOUT_S = 120.0


@dataclass
class ExpectedLedger:
    """Sessions (id -> branch glob) and every delivery sent; attempts follow from them."""

    sessions: dict[int, str] = field(default_factory=dict)
    deliveries: dict[str, PlannedDelivery] = field(default_factory=dict)

    def add(self, planned: list[PlannedDelivery]) -> None:
        for d in planned:
            self.deliveries[d.delivery_id] = d

    def carriers(self) -> dict[tuple[int, str], set[str]]:
        """Each (session, commit) owed exactly one attempt -> the deliveries that carried it."""
        found: dict[tuple[int, str], set[str]] = {}
        for session_id, glob in self.sessions.items():
            for d in self.deliveries.values():
                if fnmatch.fnmatchcase(d.branch, glob):
                    for sha in d.commit_shas:
                        found.setdefault((session_id, sha), set()).add(d.delivery_id)
        return found


def _rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql))]


def ledger_differences(engine: Engine, expected: ExpectedLedger) -> list[str]:
    """Every way the stored ledger differs from the expected one (empty when identical)."""
    return [
        *_delivery_differences(engine, expected),
        *_push_differences(engine, expected),
        *_attempt_differences(engine, expected),
        *_audit_differences(engine, expected),
    ]


def _delivery_differences(engine: Engine, expected: ExpectedLedger) -> list[str]:
    rows = _rows(engine, "SELECT delivery_id, hook_id, body_sha256 FROM deliveries")
    stored = {r[0]: (r[1], bytes(r[2])) for r in rows}
    problems = [
        f"delivery {i} stored twice" for i, n in Counter(r[0] for r in rows).items() if n > 1
    ]
    problems += [f"delivery {i} lost" for i in sorted(set(expected.deliveries) - set(stored))]
    problems += [f"delivery {i} never sent" for i in sorted(set(stored) - set(expected.deliveries))]
    for i, (hook_id, digest) in stored.items():
        want = expected.deliveries.get(i)
        if want is not None and (hook_id, digest) != (
            want.headers["x-github-hook-id"],
            want.body_sha256,
        ):
            problems.append(f"delivery {i} stored with another hook id or body")
    return problems


def _push_differences(engine: Engine, expected: ExpectedLedger) -> list[str]:
    pushes = Counter(
        r[0]
        for r in _rows(
            engine, "SELECT d.delivery_id FROM pushes p JOIN deliveries d ON d.id = p.delivery_pk"
        )
    )
    carried: dict[str, list[str]] = {}
    for delivery_id, sha in _rows(
        engine,
        "SELECT d.delivery_id, c.commit_sha FROM push_commits c JOIN pushes p ON p.id = c.push_id "
        "JOIN deliveries d ON d.id = p.delivery_pk ORDER BY c.push_id, c.position",
    ):
        carried.setdefault(delivery_id, []).append(sha)
    problems = []
    for i, d in expected.deliveries.items():
        if pushes[i] != 1:
            problems.append(f"delivery {i} has {pushes[i]} pushes, expected 1")
        elif tuple(carried.get(i, ())) != d.commit_shas:
            problems.append(f"push of {i} carries {carried.get(i)}, expected {d.commit_shas}")
    return problems


def _attempt_differences(engine: Engine, expected: ExpectedLedger) -> list[str]:
    rows = _rows(
        engine,
        "SELECT a.session_id, a.commit_sha, d.delivery_id FROM attempts a "
        "JOIN deliveries d ON d.id = a.delivery_pk",
    )
    stored = Counter((r[0], r[1]) for r in rows)
    carriers = expected.carriers()
    problems = [f"attempt {k} stored {n} times" for k, n in stored.items() if n > 1]
    problems += [f"attempt {k} lost" for k in sorted(set(carriers) - set(stored))]
    problems += [f"attempt {k} unexpected" for k in sorted(set(stored) - set(carriers))]
    for session_id, sha, delivery_id in rows:
        key = (session_id, sha)
        if key in carriers and delivery_id not in carriers[key]:
            problems.append(f"attempt {key} linked to {delivery_id}, which did not carry it")
    return problems


def _audit_differences(engine: Engine, expected: ExpectedLedger) -> list[str]:
    recorded = Counter(
        r[0]
        for r in _rows(
            engine, "SELECT target_id FROM audit_events WHERE action = 'delivery.recorded'"
        )
    )
    return [
        f"delivery {i} has {recorded[i]} 'delivery.recorded' audit events, expected 1"
        for i in expected.deliveries
        if recorded[i] != 1
    ]


def stored_delivery_ids(engine: Engine) -> set[str]:
    return {str(r[0]) for r in _rows(engine, "SELECT delivery_id FROM deliveries")}


def all_or_nothing_differences(
    engine: Engine, expected: ExpectedLedger, acknowledged: set[str]
) -> list[str]:
    """Before any redelivery: each acknowledged (202) delivery is stored, and each stored one
    is complete (push, carried commits, attempts, audit) — nothing half-written."""
    stored = stored_delivery_ids(engine)
    problems = [f"delivery {i} acknowledged but not stored" for i in sorted(acknowledged - stored)]
    partial = ExpectedLedger(
        sessions=expected.sessions,
        deliveries={i: d for i, d in expected.deliveries.items() if i in stored},
    )
    return problems + ledger_differences(engine, partial)


def ledger_counts(engine: Engine) -> dict[str, int]:
    """Rows of the ledger's tables, for the report."""
    tables = ("deliveries", "pushes", "push_commits", "attempts", "audit_events", "log_entries")
    with engine.connect() as conn:
        return {
            t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()) for t in tables
        }


def settle_and_verify(engine: Engine) -> VerifyReport:
    """Integrate whatever is queued (a server's integrator may hold the lock), then verify."""
    log = SqlLog(engine)
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        log.integrate(SIGNER)
        if log.backlog().queued == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    report = verify_database(engine, SIGNER.verifier)
    assert report.ok, [str(p) for p in report.problems[:5]]
    assert report.pending == 0, f"{report.pending} entries still queued for the log"
    return report
