"""Outbound notifications against hostile or unusual receivers and deployments."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select

from labledger.config import Subscriber
from labledger.services.notify import Dispatcher
from labledger.storage.engine import make_engine
from labledger.storage.outbox import SqlOutbox
from labledger.storage.sql_store import SqlStore
from labledger.storage.tables import outbox_events
from tests.conftest import Ledger, PgDatabases, _sqlite_ledger
from tests.contract.helpers import deliver
from tests.integration.receiver import SECRET, Receiver, running_receiver
from tests.integration.servers import LABLEDGER, server_env, write_signing_key
from tests.support import commit, push_payload, session_spec

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _subscriber(receiver: Receiver) -> Subscriber:
    return Subscriber(name="grader", url=receiver.url, secret=SecretStr(SECRET))


def _announcing(ledger: Ledger) -> SqlStore:
    store = SqlStore(ledger.engine, ("grader",))
    store.create_session(session_spec(), "test", NOW)
    return store


def test_redirecting_subscriber_is_a_failed_attempt_not_delivered(ledger: Ledger) -> None:
    """A 302 to another receiver is a failed attempt: nothing follows it, the event waits."""
    store = _announcing(ledger)
    deliver(store, push_payload([commit()]))
    with running_receiver() as target, running_receiver(status=302) as moved:
        moved.location = target.url
        report = Dispatcher(SqlOutbox(ledger.engine), (_subscriber(moved),)).run_once()
        assert report.delivered == 0 and report.retried == 1
        assert target.ids() == []  # the signed event never reached the Location's host
    (waiting,) = SqlOutbox(ledger.engine).in_state("retry")
    assert waiting.last_error == f"HTTP 302 redirect to {target.url}, not followed"


@pytest.mark.parametrize("status", [301, 303, 307, 308])
def test_every_redirect_status_is_a_failed_attempt(sqlite_ledger: Ledger, status: int) -> None:
    """Each 3xx a client might follow leaves the event due for a retry, never delivered."""
    store = _announcing(sqlite_ledger)
    deliver(store, push_payload([commit()]))
    with running_receiver() as target, running_receiver(status=status) as moved:
        moved.location = target.url
        report = Dispatcher(SqlOutbox(sqlite_ledger.engine), (_subscriber(moved),)).run_once()
        assert (report.delivered, report.retried, target.ids()) == (0, 1, [])


def test_environment_proxy_is_not_used_for_notifications(
    sqlite_ledger: Ledger, tmp_path: Path
) -> None:
    """`labledger dispatch` started with HTTP_PROXY (here: a closed port) in its environment
    still delivers straight to the subscriber."""
    store = _announcing(sqlite_ledger)
    deliver(store, push_payload([commit()]))
    with running_receiver() as grader:
        env = server_env(
            sqlite_ledger.url,
            write_signing_key(tmp_path),
            LABLEDGER_SUBSCRIBERS=f"grader={grader.url}|{SECRET}",
        )
        for name in ("NO_PROXY", "no_proxy"):
            env.pop(name, None)
        env.update(HTTP_PROXY="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9")
        done = subprocess.run(
            [LABLEDGER, "dispatch", "--once"], env=env, capture_output=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert len(grader.ids()) == 1


@pytest.fixture
def second_ledger(
    ledger: Ledger, sqlite_template: Path, tmp_path: Path, pg_databases: PgDatabases | None
) -> Iterator[Ledger]:
    """Another fresh ledger of the same dialect: a second deployment, or a rebuilt one."""
    if ledger.dialect == "sqlite":
        (tmp_path / "second").mkdir()
        made = _sqlite_ledger(sqlite_template, tmp_path / "second")
        yield made
        made.engine.dispose()
        return
    assert pg_databases is not None
    url = pg_databases.create()
    engine = make_engine(url)
    yield Ledger("postgresql", url, engine, SqlStore(engine))
    engine.dispose()
    pg_databases.drop(url)


def test_event_ids_differ_across_ledgers(ledger: Ledger, second_ledger: Ledger) -> None:
    """The first attempt of two fresh ledgers (same attempt id) gets two different event ids."""
    found = []
    for each in (ledger, second_ledger):
        answer = deliver(_announcing(each), push_payload([commit()]))
        assert answer.body["attempt_ids"] == [1]
        with each.engine.connect() as conn:
            found += conn.execute(select(outbox_events.c.event_id)).scalars().all()
    assert len(found) == 2 and found[0] != found[1]
    assert all(event_id.startswith("evt_attempt_1_") for event_id in found)
