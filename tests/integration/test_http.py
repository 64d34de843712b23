"""The HTTP edge: webhook answers, API routes, auth, health and metrics, on both stores."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from labledger.config import Settings
from labledger.core.checkpoint import parse_and_verify
from labledger.http.app import create_app
from labledger.storage.engine import make_engine
from labledger.storage.merkle_log import SqlLog
from labledger.storage.sql_store import SqlStore
from tests.conftest import Ledger
from tests.contract.helpers import audit_actions, ledger_counts
from tests.support import (
    SECRET,
    SIGNER,
    TOKEN,
    body_of,
    commit,
    headers_for,
    push_payload,
    session_spec,
    sign,
)

AUTH = {"Authorization": f"Bearer {TOKEN}"}
OTHER = "another-admin-token-abcdef0123456789"
SESSION = {
    "lab_id": "lab-1",
    "subject_id": "student-1",
    "repository_id": 186853002,
    "repository_full_name": "octo/lab",
    "opens_at": "2025-01-01T00:00:00Z",
    "due_at": "2025-11-24T15:00:00Z",
}


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"github_webhook_secret": SECRET, "api_tokens": f"{OTHER},{TOKEN}"}
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def client(ledger: Ledger) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(), ledger.store, SIGNER)) as made:
        yield made


def _post(client: TestClient, body: bytes, **header_options: object) -> object:
    return client.post(
        "/webhooks/github", content=body, headers=headers_for(body, **header_options)
    )  # type: ignore[arg-type]


def test_push_is_recorded_and_read_back(client: TestClient, ledger: Ledger) -> None:
    """A signed push answers 202 and its attempts are readable through every read route."""
    session = client.post("/api/v1/sessions", json=SESSION, headers=AUTH).json()
    c = commit()
    body = body_of(push_payload([c], pushed_at=1_764_000_000))
    answer = client.post(
        "/webhooks/github", content=body, headers=headers_for(body, delivery_id="h-1")
    )
    assert answer.status_code == 202, answer.text
    (attempt_id,) = answer.json()["attempt_ids"]

    page = client.get(f"/api/v1/sessions/{session['id']}/attempts", headers=AUTH).json()
    assert [a["id"] for a in page["items"]] == [attempt_id]
    assert page["items"][0]["late"] is True  # pushed 16:00Z, due 15:00Z
    detail = client.get(f"/api/v1/attempts/{attempt_id}", headers=AUTH).json()
    assert detail["attempt"]["commit_sha"] == c["id"]
    assert detail["push"]["ref"] == "refs/heads/main" and detail["delivery"]["delivery_id"] == "h-1"
    by_sha = client.get("/api/v1/attempts", params={"commit_sha": c["id"]}, headers=AUTH).json()
    assert [a["id"] for a in by_sha["items"]] == [attempt_id]
    delivery = client.get("/api/v1/deliveries/h-1", headers=AUTH).json()
    assert [a["id"] for a in delivery["attempts"]] == [attempt_id]
    # The feed serves entries once the Merkle log has integrated them (in `serve`: each second).
    SqlLog(ledger.store.engine).integrate(SIGNER)
    feed = client.get("/api/v1/feed", params={"after": "0"}, headers=AUTH).json()
    assert [i["id"] for i in feed["items"] if i["type"] == "attempt"] == [attempt_id]


def test_late_follows_the_current_due_date(client: TestClient) -> None:
    """A push exactly at due_at is on time: `late` means strictly after the current due date."""
    on_time = client.post(
        "/api/v1/sessions", json=dict(SESSION, due_at="2025-11-24T16:00:00Z"), headers=AUTH
    ).json()
    _post(client, body_of(push_payload([commit()], pushed_at=1_764_000_000)))
    items = client.get(f"/api/v1/sessions/{on_time['id']}/attempts", headers=AUTH).json()["items"]
    assert [a["late"] for a in items] == [False]


def test_session_attempts_paginate_by_cursor(client: TestClient) -> None:
    """Pages follow ledger order; following next_cursor visits every attempt exactly once."""
    session = client.post("/api/v1/sessions", json=SESSION, headers=AUTH).json()
    for _ in range(3):
        _post(client, body_of(push_payload([commit(), commit()])))
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        params = {"limit": "4", **({"cursor": cursor} if cursor else {})}
        page = client.get(
            f"/api/v1/sessions/{session['id']}/attempts", params=params, headers=AUTH
        ).json()
        seen.extend(a["id"] for a in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 6 and seen == sorted(seen)


def test_redelivery_answers_200_with_the_same_ids(client: TestClient, ledger: Ledger) -> None:
    """The second copy of a delivery answers 200 duplicate with the first answer's ids."""
    client.post("/api/v1/sessions", json=SESSION, headers=AUTH)
    body = body_of(push_payload([commit()]))
    first = _post(client, body, delivery_id="h-dup")
    again = _post(client, body, delivery_id="h-dup")
    assert (first.status_code, again.status_code) == (202, 200)  # type: ignore[attr-defined]
    assert again.json()["attempt_ids"] == first.json()["attempt_ids"]  # type: ignore[attr-defined]
    assert again.json()["outcome"] == "duplicate"  # type: ignore[attr-defined]


def test_conflicting_body_answers_409(client: TestClient) -> None:
    """The same delivery id and hook with another body is refused with 409."""
    _post(client, body_of(push_payload([commit()])), delivery_id="h-409", hook_id="9")
    answer = _post(client, body_of(push_payload([commit()])), delivery_id="h-409", hook_id="9")
    assert answer.status_code == 409 and answer.json()["error"] == "conflict"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("case", "mutate", "status", "error"),
    [
        ("no signature", lambda h, b: h.pop("x-hub-signature-256"), 401, "signature"),
        (
            "wrong secret",
            lambda h, b: h.update({"x-hub-signature-256": sign(b, "nope")}),
            401,
            "signature",
        ),
        ("sha1 only", lambda h, b: h.update({"x-hub-signature-256": "sha1=abc"}), 401, "signature"),
        (
            "form encoded",
            lambda h, b: h.update({"content-type": "application/x-www-form-urlencoded"}),
            415,
            "not_json",
        ),
        ("no delivery id", lambda h, b: h.pop("x-github-delivery"), 400, "malformed"),
        ("no event", lambda h, b: h.pop("x-github-event"), 400, "malformed"),
    ],
)
def test_refused_requests_write_nothing(
    client: TestClient, ledger: Ledger, case: str, mutate: object, status: int, error: str
) -> None:
    """Each refusal has its own status and error code, and nothing reaches the ledger."""
    before = ledger.store.count_rows()
    body = body_of(push_payload([commit()]))
    headers = headers_for(body)
    mutate(headers, body)  # type: ignore[operator]
    answer = client.post("/webhooks/github", content=body, headers=headers)
    assert (answer.status_code, answer.json()["error"]) == (status, error), case
    assert ledger.store.count_rows() == before


def test_malformed_payload_says_what_is_wrong(client: TestClient, ledger: Ledger) -> None:
    """A signed payload missing a field gets 400 naming the field, and nothing is written."""
    payload = push_payload([commit()])
    del payload["commits"][0]["id"]
    answer = _post(client, body_of(payload))
    assert answer.status_code == 400  # type: ignore[attr-defined]
    assert "commits.0.id" in answer.json()["detail"]  # type: ignore[attr-defined]
    assert ledger_counts(ledger.store)["deliveries"] == 0


def test_oversized_body_is_refused_with_413(ledger: Ledger) -> None:
    """A body over LABLEDGER_MAX_BODY_BYTES is refused before it is checked or stored."""
    with TestClient(create_app(_settings(max_body_bytes=1000), ledger.store, SIGNER)) as small:
        body = body_of(push_payload([commit() for _ in range(10)]))
        assert len(body) > 1000
        answer = small.post("/webhooks/github", content=body, headers=headers_for(body))
        assert answer.status_code == 413 and answer.json()["error"] == "too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the streaming limit must hold
            yield from (body[i : i + 100] for i in range(0, len(body), 100))

        streamed = small.post("/webhooks/github", content=chunks(), headers=headers_for(body))
        assert streamed.status_code == 413
    assert ledger.store.count_rows()["deliveries"] == 0


def test_ping_and_unknown_events_are_acknowledged_and_not_stored(
    client: TestClient, ledger: Ledger
) -> None:
    """ping answers 200, other events answer 200 ignored; neither writes ledger rows."""
    before = ledger.store.count_rows()
    ping = _post(client, b'{"zen": "Keep it logically awesome.", "hook_id": 1}', event="ping")
    issues = _post(client, b'{"action": "opened"}', event="issues")
    assert ping.status_code == 200 and ping.json()["outcome"] == "ping"  # type: ignore[attr-defined]
    assert issues.status_code == 200 and issues.json()["outcome"] == "ignored"  # type: ignore[attr-defined]
    assert ledger.store.count_rows() == before


def test_every_api_route_requires_a_valid_token(ledger: Ledger) -> None:
    """Every /api/v1 route, enumerated from the app, refuses a missing or unknown token."""
    app = create_app(_settings(), ledger.store, SIGNER)
    client = TestClient(app)
    # The OpenAPI schema lists every route the app serves, so a new route cannot be forgotten.
    routes = {p: ops for p, ops in app.openapi()["paths"].items() if p.startswith("/api/")}
    assert sum(len(ops) for ops in routes.values()) >= 8
    for template, operations in routes.items():
        path = template.replace("{session_id}", "1").replace("{attempt_id}", "1")
        path = path.replace("{delivery_id}", "x")
        for method in operations:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
                answer = client.request(method, path, headers=headers, json=SESSION)
                assert answer.status_code == 401, (method, path, headers)
                assert answer.headers["www-authenticate"] == "Bearer"


def test_api_errors_are_precise(client: TestClient) -> None:
    """Unknown ids answer 404, impossible sessions 422, bad cursors 400."""
    assert client.get("/api/v1/sessions/999", headers=AUTH).status_code == 404
    assert client.get("/api/v1/attempts/999", headers=AUTH).status_code == 404
    assert client.get("/api/v1/deliveries/nope", headers=AUTH).status_code == 404
    huge = 2**64  # beyond the database's 64-bit ids: refused at the edge, not a driver error
    for path in (f"/api/v1/sessions/{huge}", f"/api/v1/attempts/{huge}/proof"):
        assert client.get(path, headers=AUTH).status_code == 422, path
    backwards = dict(SESSION, due_at="2024-01-01T00:00:00Z")
    assert client.post("/api/v1/sessions", json=backwards, headers=AUTH).status_code == 422
    naive = dict(SESSION, opens_at="2025-01-01T00:00:00")
    assert client.post("/api/v1/sessions", json=naive, headers=AUTH).status_code == 422
    edge = dict(SESSION, opens_at="0001-01-01T00:00:00+01:00", due_at=None)
    assert client.post("/api/v1/sessions", json=edge, headers=AUTH).status_code == 422
    session = client.post("/api/v1/sessions", json=SESSION, headers=AUTH).json()
    bad = client.get(
        f"/api/v1/sessions/{session['id']}/attempts", params={"cursor": "x"}, headers=AUTH
    )
    assert bad.status_code == 400
    assert (
        client.get("/api/v1/attempts", params={"commit_sha": "zz"}, headers=AUTH).status_code == 422
    )


def test_health_metrics_and_openapi(client: TestClient) -> None:
    """healthz reports the database, metrics count outcomes, and the OpenAPI schema is served."""
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}
    _post(client, body_of(push_payload([commit()])))
    bad = body_of(push_payload([commit()]))
    client.post(
        "/webhooks/github",
        content=bad,
        headers=dict(headers_for(bad), **{"x-hub-signature-256": "sha256=00"}),
    )
    text = client.get("/metrics").text
    assert 'labledger_deliveries_total{forge="github",outcome="recorded"} 1.0' in text
    assert 'labledger_signature_failures_total{forge="github"} 1.0' in text
    assert (
        'labledger_request_duration_seconds_count{method="POST",'
        'route="/webhooks/github",status="202"} 1.0' in text
    )
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/webhooks/github", "/api/v1/sessions/{session_id}/attempts", "/api/v1/feed"} <= set(
        paths
    )


def test_metrics_count_deliveries_per_commit(client: TestClient) -> None:
    """/metrics shows how many deliveries each commit of the group-committing writer carried."""
    for _ in range(2):
        assert _post(client, body_of(push_payload([commit()]))).status_code == 202
    text = client.get("/metrics").text
    assert 'labledger_deliveries_per_commit_bucket{le="1.0"} 2.0' in text
    assert "labledger_deliveries_per_commit_count 2.0" in text
    assert "labledger_deliveries_per_commit_sum 2.0" in text


def _gauge(text: str, name: str) -> float | None:
    found = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(found[0].split()[1]) if found else None


def test_metrics_show_how_far_the_log_lags(client: TestClient, ledger: Ledger) -> None:
    """The integrator may run elsewhere; /metrics reads its lag from the database."""
    ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    before = client.get("/metrics").text
    assert _gauge(before, "labledger_log_tree_size") == 0
    assert _gauge(before, "labledger_checkpoint_age_seconds") is None  # nothing signed yet
    _post(client, body_of(push_payload([commit(), commit()])))
    waiting = client.get("/metrics").text
    assert (_gauge(waiting, "labledger_log_queued_entries") or 0) > 0
    checkpoint = SqlLog(ledger.engine).integrate(SIGNER)
    assert checkpoint is not None
    after = client.get("/metrics").text
    assert _gauge(after, "labledger_log_queued_entries") == 0
    assert _gauge(after, "labledger_log_tree_size") == checkpoint.tree_size
    age = _gauge(after, "labledger_checkpoint_age_seconds")
    assert age is not None and 0 <= age < 3600


def test_metrics_answer_while_the_database_is_down(tmp_path: Path) -> None:
    """A scrape during an outage still answers 200; only the log gauges are missing."""
    engine = make_engine(f"sqlite:///{tmp_path / 'missing' / 'ledger.db'}")
    with TestClient(create_app(_settings(), SqlStore(engine), SIGNER)) as broken:
        answer = broken.get("/metrics")
    assert answer.status_code == 200
    assert "labledger_log_queued_entries" not in answer.text
    assert "labledger_request_duration_seconds" in answer.text


def test_conflict_is_audited(client: TestClient, ledger: Ledger) -> None:
    """A 409 leaves an audit event and nothing else."""
    _post(client, body_of(push_payload([commit()])), delivery_id="h-a", hook_id="1")
    before = ledger_counts(ledger.store)
    _post(client, body_of(push_payload([commit()])), delivery_id="h-a", hook_id="1")
    assert ledger_counts(ledger.store) == before
    assert audit_actions(ledger.store)[-1] == "delivery.conflict"


def test_logs_bind_the_delivery_id_and_keep_personal_data_out(client: TestClient) -> None:
    """Each webhook log line carries the delivery id; names and e-mails never appear at INFO."""
    import structlog
    from structlog.testing import capture_logs

    body = body_of(push_payload([commit()]))
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        client.post(
            "/webhooks/github", content=body, headers=headers_for(body, delivery_id="log-1")
        )
        bad = dict(headers_for(body, delivery_id="log-2"), **{"x-hub-signature-256": "sha256=00"})
        client.post("/webhooks/github", content=body, headers=bad)
    answered = [e for e in logs if e["event"] in ("webhook.answered", "webhook.refused")]
    assert [e["delivery_id"] for e in answered] == ["log-1", "log-2"]
    assert "ada@example.edu" not in repr(logs) and "Ada Student" not in repr(logs)


def test_healthz_says_when_to_retry_while_the_database_is_unreachable(tmp_path: Path) -> None:
    """With the database unreachable, /healthz answers 503 with Retry-After."""
    engine = make_engine(f"sqlite:///{tmp_path / 'missing-folder' / 'ledger.db'}")
    try:
        app = create_app(_settings(), SqlStore(engine), SIGNER)
        with TestClient(app) as unreachable:
            answer = unreachable.get("/healthz")
        assert answer.status_code == 503
        assert answer.json() == {"status": "degraded", "database": "unreachable"}
        assert answer.headers["retry-after"].isdigit()
    finally:
        engine.dispose()


def test_public_checkpoint_is_a_signed_note_for_witnesses(
    client: TestClient, ledger: Ledger
) -> None:
    """GET /checkpoint answers the newest signed note as text, with no token, or 404 before one."""
    assert client.get("/checkpoint").status_code == 404
    body = body_of(push_payload([commit()]))
    assert _post(client, body).status_code == 202  # type: ignore[attr-defined]
    SqlLog(ledger.store.engine).integrate(SIGNER)
    answer = client.get("/checkpoint")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert parse_and_verify(answer.text, SIGNER.verifier, origin=SIGNER.name).size > 0
