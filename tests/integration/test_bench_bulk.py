"""The bulk-loaded ledger of the benchmarks is one labledger could have written: `verify`
re-derives every push and attempt from a raw body of its own and finds nothing, on SQLite and
PostgreSQL, so the `verify` benchmark times the whole check."""

from __future__ import annotations

import json

import pytest
from bench import bulk, tamper
from bench.databases import Database
from bench.tamper import _integrate_everything, _queue_everything

from labledger.forges.github import parse_github_push
from labledger.storage.verification import verify_database
from tests.conftest import Ledger
from tests.support import SIGNER

ATTEMPTS = 600  # six sessions, 120 deliveries


def test_bulk_rows_are_re_derived_from_bodies_of_their_own(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every delivery has its own body, and verify re-derives every row from it: intact over
    several checkpoints, with no limitation (no row checked against its push row only)."""
    monkeypatch.setattr(tamper, "INTEGRATE_BATCH", 200)
    bulk.load(Database(ledger.dialect, ledger.url, "test"), ATTEMPTS)
    _queue_everything(ledger.engine)
    assert _integrate_everything(ledger.engine, SIGNER) > 3
    layout = bulk.Layout(ATTEMPTS)
    bodies = {bulk.body(layout, d) for d in range(1, layout.deliveries + 1)}
    assert len(bodies) == layout.deliveries
    first = parse_github_push(bulk.body(layout, 1))
    assert [c.sha for c in first.commits] == [bulk.commit_sha(a) for a in range(1, 6)]
    report = verify_database(ledger.engine, SIGNER.verifier)
    assert report.ok, report.problems[:3]
    assert report.limitations == [] and report.entries > ATTEMPTS
    assert json.loads(bulk.body(layout, 2))["repository"]["id"] == bulk.REPO_BASE + 2
