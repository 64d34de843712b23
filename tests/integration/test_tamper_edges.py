"""Tamper evidence through the HTTP API and the command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from labledger.cli import main
from labledger.config import Settings
from labledger.core.receipt import Receipt, verify_receipt
from labledger.http.app import create_app
from labledger.storage.merkle_log import SqlLog
from tests.conftest import Ledger
from tests.contract.helpers import deliver
from tests.support import SECRET, SIGNER, TOKEN, commit, push_payload, session_spec

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _client(ledger: Ledger) -> TestClient:
    settings = Settings.model_validate({"github_webhook_secret": SECRET, "api_tokens": TOKEN})
    return TestClient(create_app(settings, ledger.store, SIGNER))


def test_receipt_served_by_the_api_verifies_offline(ledger: Ledger) -> None:
    """GET /attempts/{id}/proof returns a receipt that checks with the served public key."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    answer = deliver(ledger.store, push_payload([commit(), commit()]))
    attempt_id = answer.body["attempt_ids"][0]  # type: ignore[index]
    with _client(ledger) as client:
        early = client.get(f"/api/v1/attempts/{attempt_id}/proof", headers=AUTH)
        assert early.status_code == 409 and early.json()["error"] == "not_yet_logged"
        assert "retry-after" in early.headers
        SqlLog(ledger.engine).integrate(SIGNER, datetime.now(UTC))
        receipt = client.get(f"/api/v1/attempts/{attempt_id}/proof", headers=AUTH).json()
        key_text = client.get("/public-key").text.strip()
        checkpoint = client.get("/api/v1/checkpoint", headers=AUTH).json()
        missing = client.get("/api/v1/attempts/999/proof", headers=AUTH)
    assert missing.status_code == 404
    assert receipt["entry"]["kind"] == "attempt" and receipt["entry"]["content"]["id"] == attempt_id
    assert key_text == SIGNER.verifier.encode() == checkpoint["public_key"]
    proven = verify_receipt(Receipt.from_json(receipt), SIGNER.verifier)
    assert proven.size == checkpoint["tree_size"]


def test_consistency_route(ledger: Ledger) -> None:
    """The API proves a newer checkpoint extends an older one, and refuses unknown sizes."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    log = SqlLog(ledger.engine)
    first = log.integrate(SIGNER, datetime.now(UTC))
    deliver(ledger.store, push_payload([commit()]))
    second = log.integrate(SIGNER, datetime.now(UTC))
    assert first is not None and second is not None
    with _client(ledger) as client:
        proof = client.get(
            "/api/v1/checkpoint/consistency", params={"old_size": first.tree_size}, headers=AUTH
        ).json()
        unknown = client.get(
            "/api/v1/checkpoint/consistency", params={"old_size": 9999}, headers=AUTH
        )
    assert (proof["old_size"], proof["new_size"]) == (first.tree_size, second.tree_size)
    assert proof["new_root"] == f"sha256:{second.root_hash.hex()}"
    assert unknown.status_code == 404


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, ledger: Ledger, tmp_path: Path) -> Path:
    monkeypatch.setenv("LABLEDGER_DATABASE_URL", ledger.url)
    monkeypatch.setenv("LABLEDGER_GITHUB_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("LABLEDGER_SIGNING_KEY_FILE", str(tmp_path / "keys" / "signing.key"))
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    deliver(ledger.store, push_payload([commit(), commit()]))
    return tmp_path


def test_cli_key_integrate_prove_export_verify(
    cli_env: Path, ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole offline workflow from the command line, as a teacher would follow it."""
    assert main(["verify"]) == 2  # no key yet: a configuration error, named
    assert "labledger keys init" in capsys.readouterr().err
    assert main(["keys", "init", "--name", "course.example/labs"]) == 2  # another ledger's name
    assert main(["keys", "init"]) == 0  # named after the ledger's origin
    vkey = capsys.readouterr().out.strip()
    assert vkey.startswith(f"{SIGNER.name}+")
    assert main(["keys", "init"]) == 2  # never overwrites
    assert main(["keys", "init", "--exist-ok"]) == 0
    (cli_env / "key.pub").write_text(vkey + "\n")

    assert main(["integrate"]) == 0
    assert "checkpoint:" in capsys.readouterr().out
    assert main(["checkpoint", "--out", str(cli_env / "witness.note")]) == 0
    assert main(["prove", "attempt", "1", "--out", str(cli_env / "receipt.json")]) == 0
    assert (
        main(
            [
                "verify-receipt",
                str(cli_env / "receipt.json"),
                "--public-key",
                str(cli_env / "key.pub"),
            ]
        )
        == 0
    )
    assert "valid: leaf" in capsys.readouterr().out
    assert main(["export", str(cli_env / "export")]) == 0
    assert (
        main(
            [
                "verify",
                "--export",
                str(cli_env / "export"),
                "--public-key",
                str(cli_env / "key.pub"),
            ]
        )
        == 0
    )
    assert main(["verify", "--against", str(cli_env / "witness.note")]) == 0
    assert "intact:" in capsys.readouterr().out

    receipt = json.loads((cli_env / "receipt.json").read_text())
    receipt["leaf_index"] += 1
    (cli_env / "bad.json").write_text(json.dumps(receipt))
    assert (
        main(
            ["verify-receipt", str(cli_env / "bad.json"), "--public-key", str(cli_env / "key.pub")]
        )
        == 3
    )


def test_cli_verify_exits_3_and_names_the_entry(
    cli_env: Path, ledger: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tampered database makes `verify` exit 3 and print the first bad entry."""
    assert main(["keys", "init"]) == 0
    assert main(["integrate"]) == 0
    with ledger.engine.begin() as conn:
        if ledger.dialect == "sqlite":
            conn.exec_driver_sql("DROP TRIGGER attempts_no_update")
        else:
            conn.exec_driver_sql("ALTER TABLE attempts DISABLE TRIGGER ALL")
        conn.exec_driver_sql("UPDATE attempts SET branch = 'rewritten' WHERE id = 2")
    capsys.readouterr()
    assert main(["verify"]) == 3
    out = capsys.readouterr().out
    assert "TAMPERED" in out and "leaf_mismatch" in out and "attempts 2" in out
