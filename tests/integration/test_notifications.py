"""Outbound notifications through the outbox, to real HTTP receivers, on both databases."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx2
import pytest
from pydantic import SecretStr

from labledger.cli import main
from labledger.config import Subscriber
from labledger.core.model import NewVerification
from labledger.services.notify import Dispatcher, SendResult, http_post
from labledger.storage.outbox import SqlOutbox
from labledger.storage.sql_store import SqlStore, SqlWriter
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.integration.receiver import SECRET, Receiver, running_receiver
from tests.integration.servers import (
    LABLEDGER,
    _wait_healthy,
    free_port,
    server_env,
    write_signing_key,
)
from tests.support import body_of, commit, headers_for, push_payload, session_spec

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def _kind_and_id(event_id: str) -> str:
    """`evt_attempt_7` of `evt_attempt_7_<random>` (the random part keeps ledgers apart)."""
    return event_id.rsplit("_", 1)[0]


def _received(receiver: Receiver) -> list[str]:
    return [_kind_and_id(i) for i in receiver.ids()]


def _subscriber(name: str, receiver: Receiver) -> Subscriber:
    return Subscriber(name=name, url=receiver.url, secret=SecretStr(SECRET))


def _announcing(ledger: Ledger, *names: str) -> SqlStore:
    store = SqlStore(ledger.engine, names)
    store.create_session(session_spec(), "test", NOW)
    return store


def test_each_new_attempt_is_notified_once_per_subscriber(ledger: Ledger) -> None:
    """Two subscribers each get one signed event per attempt; a redelivered push adds none."""
    store = _announcing(ledger, "grader", "preview")
    body = body_of(push_payload([commit(), commit(), commit()]))
    answer = deliver(store, body, delivery_id="d-1")
    attempt_ids = answer.body["attempt_ids"]
    with running_receiver() as grader, running_receiver() as preview:
        dispatcher = Dispatcher(
            SqlOutbox(ledger.engine),
            (_subscriber("grader", grader), _subscriber("preview", preview)),
        )
        assert dispatcher.run_once().delivered == 6
        assert deliver(store, body, delivery_id="d-1").outcome == "duplicate"
        assert deliver(store, body, delivery_id="d-1", hook_id="other").outcome == "duplicate"
        assert dispatcher.run_once().delivered == 0
        expected = [f"evt_attempt_{i}" for i in attempt_ids]  # type: ignore[attr-defined]
        assert _received(grader) == expected and _received(preview) == expected
        data = grader.payloads()[0]
        assert data["type"] == "attempt.recorded"
        assert data["data"]["attempt_id"] == attempt_ids[0]  # type: ignore[index]
        store.record_verification(
            NewVerification(attempt_ids[0], "ci", "r1", "passed", None, None, {}, NOW, "t")  # type: ignore[index]
        )
        assert dispatcher.run_once().delivered == 2
        assert grader.payloads()[-1]["type"] == "verification.recorded"
    assert ledger.store.count_rows()["outbox_events"] == 8


def test_nothing_is_announced_when_the_recording_rolls_back(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbox rows commit with the attempts or not at all (one transaction)."""
    store = _announcing(ledger, "grader")

    def crash(*_args: object) -> int:
        raise RuntimeError("crash after the attempts, before the commit")

    monkeypatch.setattr(SqlWriter, "append_audit", crash)
    with pytest.raises(RuntimeError):
        deliver(store, push_payload([commit()]))
    counts = ledger.store.count_rows()
    assert counts["attempts"] == 0 and counts["outbox_events"] == 0


class _Crash(BaseException):
    """Stands for the process dying (SIGKILL) between sending and recording the outcome."""


def test_a_crash_after_sending_resends_the_same_event_id_only(ledger: Ledger) -> None:
    """Killed after the receiver got an event but before recording it: the restart resends
    that event with the same webhook-id, and every other event exactly once."""
    store = _announcing(ledger, "grader")
    ids = deliver(store, push_payload([commit() for _ in range(4)])).body["attempt_ids"]
    with running_receiver() as grader:
        sent = 0

        def crash_after_second(
            url: str, headers: Mapping[str, str], body: bytes, timeout: float
        ) -> SendResult:
            nonlocal sent
            result = http_post(url, headers, body, timeout)
            sent += 1
            if sent == 2:
                raise _Crash
            return result

        outbox = SqlOutbox(ledger.engine)
        with pytest.raises(_Crash):
            Dispatcher(outbox, (_subscriber("grader", grader),), send=crash_after_second).run_once()
        assert Dispatcher(outbox, (_subscriber("grader", grader),)).run_once().delivered == 3
        counts = Counter(_received(grader))
    assert set(counts) == {f"evt_attempt_{i}" for i in ids}  # type: ignore[attr-defined]
    assert sorted(counts.values()) == [1, 1, 1, 2]
    assert counts[f"evt_attempt_{ids[1]}"] == 2  # type: ignore[index]


def test_two_dispatchers_on_one_database_send_each_event_once(ledger: Ledger) -> None:
    """Two processes' dispatchers (here: two engines) on one database: while one is sending,
    the other skips its round, on SQLite as on PostgreSQL."""
    from labledger.services.notify import RoundReport
    from labledger.storage.engine import make_engine

    store = _announcing(ledger, "grader")
    ids = deliver(store, push_payload([commit() for _ in range(3)])).body["attempt_ids"]
    other_engine = make_engine(ledger.url)
    during: list[RoundReport] = []
    with running_receiver() as grader:
        subscribers = (_subscriber("grader", grader),)
        other = Dispatcher(SqlOutbox(other_engine), subscribers)

        def send_while_the_other_tries(
            url: str, headers: Mapping[str, str], body: bytes, timeout: float
        ) -> SendResult:
            if not during:
                during.append(other.run_once())
            return http_post(url, headers, body, timeout)

        first = Dispatcher(SqlOutbox(ledger.engine), subscribers, send=send_while_the_other_tries)
        assert first.run_once().delivered == 3
        assert other.run_once().delivered == 0  # nothing left, and the lock was released
        counts = Counter(_received(grader))
    other_engine.dispose()
    assert during == [RoundReport()]
    assert counts == Counter(f"evt_attempt_{i}" for i in ids)  # type: ignore[attr-defined]


def test_a_killed_dispatch_process_restarts_without_losing_events(
    ledger: Ledger, tmp_path: Path
) -> None:
    """`labledger dispatch` killed with SIGKILL mid-way, then restarted: every event arrives,
    duplicates only as resends of the same event id."""
    store = _announcing(ledger, "grader")
    for _ in range(4):
        deliver(store, push_payload([commit(), commit()]))
    expected = {f"evt_attempt_{i}" for i in range(1, 9)}
    with running_receiver(delay=0.15) as grader:
        env = server_env(
            ledger.url,
            write_signing_key(tmp_path),
            LABLEDGER_SUBSCRIBERS=f"grader={grader.url}|{SECRET}",
            LABLEDGER_DISPATCH_INTERVAL_SECONDS="0.05",
        )
        proc = subprocess.Popen([LABLEDGER, "dispatch"], env=env, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while len(grader.ids()) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert 3 <= len(set(grader.ids())) < len(expected)
        rerun = subprocess.run(
            [LABLEDGER, "dispatch", "--once"], env=env, capture_output=True, timeout=60
        )
        assert rerun.returncode == 0, rerun.stderr
        counts = Counter(_received(grader))
    assert set(counts) == expected
    assert max(counts.values()) <= 2
    assert SqlOutbox(ledger.engine).due(datetime.now(UTC) + timedelta(days=1)) == []


def test_a_down_receiver_gets_retries_then_a_dead_letter_then_a_replay(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Failures back off exponentially; after the budget the event is a dead letter, listed by
    `labledger dispatch dead-letters`; `replay` delivers it with its original event id."""
    store = _announcing(ledger, "grader")
    (attempt_id,) = deliver(store, push_payload([commit()])).body["attempt_ids"]  # type: ignore[misc]
    now = [NOW]
    with running_receiver(status=503) as grader:
        outbox = SqlOutbox(ledger.engine)
        dispatcher = Dispatcher(
            outbox,
            (_subscriber("grader", grader),),
            max_attempts=3,
            backoff_seconds=10,
            clock=lambda: now[0],
        )
        assert dispatcher.run_once().retried == 1
        assert dispatcher.run_once().retried == 0  # not due before its back-off
        (waiting,) = outbox.in_state("retry")
        assert waiting.next_attempt_at == NOW + timedelta(seconds=10)
        now[0] += timedelta(seconds=10)
        assert dispatcher.run_once().retried == 1
        assert outbox.in_state("retry")[0].next_attempt_at == now[0] + timedelta(seconds=20)
        now[0] += timedelta(seconds=20)
        assert dispatcher.run_once().dead == 1
        now[0] += timedelta(days=1)
        assert dispatcher.run_once() == type(dispatcher.run_once())()  # dead letters wait
        (dead,) = outbox.in_state("dead")
        assert _kind_and_id(dead.event_id) == f"evt_attempt_{attempt_id}"
        assert "503" in (dead.last_error or "")

        monkeypatch.setenv("LABLEDGER_DATABASE_URL", ledger.url)
        monkeypatch.setenv("LABLEDGER_SUBSCRIBERS", f"grader={grader.url}|{SECRET}")
        for name in ("LABLEDGER_CONFIG", "LABLEDGER_API_TOKENS"):
            monkeypatch.delenv(name, raising=False)
        capsys.readouterr()
        assert main(["dispatch", "dead-letters"]) == 0
        assert dead.event_id in capsys.readouterr().out
        grader.status = 200
        assert main(["dispatch", "replay", str(dead.id)]) == 0
        assert main(["dispatch", "replay", str(dead.id)]) == 1  # no longer a dead letter
        assert main(["dispatch", "--once"]) == 0
        assert grader.ids() == [dead.event_id]
    states = [h["state"] for h in outbox.history(dead.id)]
    assert states == ["retry", "retry", "dead", "replay", "delivered"]


def test_serve_dispatches_in_the_background(sqlite_ledger: Ledger, tmp_path: Path) -> None:
    """`serve` with subscribers notifies a new attempt without any other command."""
    ledger = sqlite_ledger
    ledger.store.create_session(session_spec(), "test", NOW)
    with running_receiver() as grader:
        port = free_port()
        env = server_env(
            ledger.url,
            write_signing_key(tmp_path),
            LABLEDGER_SUBSCRIBERS=f"grader={grader.url}|{SECRET}",
            LABLEDGER_DISPATCH_INTERVAL_SECONDS="0.1",
        )
        proc = subprocess.Popen(
            [LABLEDGER, "serve", "--port", str(port), "--no-access-log"],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(url, proc)
            body = body_of(push_payload([commit()]))
            answer = httpx2.post(f"{url}/webhooks/github", content=body, headers=headers_for(body))
            assert answer.status_code == 202
            deadline = time.monotonic() + 20
            while not grader.ids() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        (attempt_id,) = answer.json()["attempt_ids"]
        assert _received(grader) == [f"evt_attempt_{attempt_id}"]


def test_a_redirect_is_a_failed_delivery(sqlite_ledger: Ledger) -> None:
    """A 3xx is not followed (it would drop the body): the event stays due for a retry."""
    store = _announcing(sqlite_ledger, "grader")
    deliver(store, push_payload([commit()]))
    with running_receiver(status=302) as moved:
        dispatcher = Dispatcher(SqlOutbox(sqlite_ledger.engine), (_subscriber("grader", moved),))
        assert dispatcher.run_once().retried == 1
    (waiting,) = SqlOutbox(sqlite_ledger.engine).in_state("retry")
    assert waiting.last_error == "HTTP 302 redirect to (none), not followed"
