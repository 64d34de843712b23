"""The web view over HTTP: sign-in, cookies, pages, student links, CSP (both databases)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from labledger.config import Settings
from labledger.core.receipt import Receipt, verify_receipt
from labledger.http.app import create_app
from labledger.http.ui.access import UiKeys
from labledger.storage.merkle_log import SqlLog
from tests.conftest import Ledger
from tests.support import SECRET, SIGNER, body_of, commit, headers_for, push_payload, session_spec

READ_TOKEN = "read-token-for-the-web-view-tests-0001"
ADMIN_TOKEN = "admin-token-for-the-web-view-tests-001"
UI_KEY = "k" * 40


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "github_webhook_secret": SECRET,
        "api_tokens": f"read:{READ_TOKEN},admin:{ADMIN_TOKEN}",
        "ui_secret_key": UI_KEY,
    }
    values.update(overrides)
    return Settings.model_validate(values)


@pytest.fixture
def client(ledger: Ledger) -> Iterator[TestClient]:
    with TestClient(create_app(_settings(), ledger.store, SIGNER)) as made:
        yield made


def _record_lab(client: TestClient, ledger: Ledger) -> int:
    session = ledger.store.create_session(session_spec(), "test", datetime.now(UTC))
    on_time = push_payload([commit(1), commit(2)], pushed_at=1_763_990_000)
    late = push_payload([commit(3)], pushed_at=1_764_100_000, forced=True, before=commit(2)["id"])
    for payload in (on_time, late):
        body = body_of(payload)
        assert (
            client.post("/webhooks/github", content=body, headers=headers_for(body)).status_code
            == 202
        )
    SqlLog(ledger.store.engine).integrate(SIGNER)
    return session.id


def _sign_in(client: TestClient, token: str) -> None:
    form = client.get("/ui/sign-in")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = client.post(
        "/ui/sign-in", data={"token": token, "csrf": csrf.group(1)}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text


def test_pages_need_a_signed_in_session(client: TestClient, ledger: Ledger) -> None:
    """Every instructor page redirects to the sign-in form without a session cookie."""
    session_id = _record_lab(client, ledger)
    for path in (
        "/ui/",
        "/ui/labs/lab-1",
        f"/ui/sessions/{session_id}",
        "/ui/attempts/1",
        "/ui/attempts/1/receipt",
        "/ui/labs/lab-1/summary.csv",
    ):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/ui/sign-in"


def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_it(
    client: TestClient, ledger: Ledger
) -> None:
    """A known token opens a cookie session (HttpOnly, SameSite=Strict); signing out ends it."""
    _record_lab(client, ledger)
    _sign_in(client, READ_TOKEN)
    cookie = next(c for c in client.cookies.jar if c.name == "labledger_ui")
    assert READ_TOKEN not in cookie.value
    assert client.get("/ui/").status_code == 200
    page = client.get("/ui/")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    out = client.post("/ui/sign-out", data={"csrf": csrf.group(1)}, follow_redirects=False)
    assert out.status_code == 303
    assert client.get("/ui/", follow_redirects=False).status_code == 303


def test_sign_in_cookie_flags(client: TestClient) -> None:
    """The session cookie is HttpOnly, SameSite=Strict and scoped to /ui; the token is not in it."""
    form = client.get("/ui/sign-in")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    answer = client.post(
        "/ui/sign-in", data={"token": READ_TOKEN, "csrf": csrf.group(1)}, follow_redirects=False
    )
    line = next(v for v in answer.headers.get_list("set-cookie") if v.startswith("labledger_ui="))
    assert "HttpOnly" in line and "SameSite=strict" in line and "Path=/ui" in line
    assert READ_TOKEN not in line
    assert "token" not in answer.headers["location"]


def test_unknown_token_and_forged_form_are_refused(client: TestClient) -> None:
    """A wrong token answers 401 and sets no session; a sign-in without the form token, 403."""
    form = client.get("/ui/sign-in")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf is not None
    wrong = client.post("/ui/sign-in", data={"token": "nope" * 10, "csrf": csrf.group(1)})
    assert wrong.status_code == 401
    assert "labledger_ui" not in client.cookies
    client.cookies.clear()
    forged = client.post("/ui/sign-in", data={"token": READ_TOKEN, "csrf": "made-up"})
    assert forged.status_code == 403


def test_every_page_renders_with_a_strict_csp(client: TestClient, ledger: Ledger) -> None:
    """Labs, lab, session timeline and attempt pages answer 200 with CSP and no inline script."""
    session_id = _record_lab(client, ledger)
    _sign_in(client, READ_TOKEN)
    attempt_id = ledger.store.all_session_attempts(session_id)[0].id
    for path in (
        "/ui/",
        "/ui/labs/lab-1",
        f"/ui/sessions/{session_id}",
        f"/ui/attempts/{attempt_id}",
        "/verify",
    ):
        page = client.get(path)
        assert page.status_code == 200, path
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text) is None, path
        assert " style=" not in page.text, path
    timeline = client.get(f"/ui/sessions/{session_id}").text
    assert timeline.count('class="dot') == 3
    assert 'class="dot late"' in timeline and "force-push" in timeline


def test_lab_csv_download_matches_the_api(client: TestClient, ledger: Ledger) -> None:
    """The overview's CSV is the API's lab CSV, byte for byte."""
    _record_lab(client, ledger)
    _sign_in(client, READ_TOKEN)
    page = client.get("/ui/labs/lab-1/summary.csv")
    api = client.get(
        "/api/v1/labs/lab-1/summary?format=csv",
        headers={"Authorization": f"Bearer {READ_TOKEN}"},
    )
    assert page.status_code == 200 and page.text == api.text


def test_downloaded_receipt_verifies(client: TestClient, ledger: Ledger) -> None:
    """The attempt page's receipt download is a receipt that verifies against the ledger's key."""
    session_id = _record_lab(client, ledger)
    _sign_in(client, READ_TOKEN)
    attempt_id = ledger.store.all_session_attempts(session_id)[0].id
    answer = client.get(f"/ui/attempts/{attempt_id}/receipt")
    assert answer.status_code == 200
    receipt = Receipt.from_json(json.loads(answer.text))
    assert verify_receipt(receipt, SIGNER.verifier).size >= 1


def _link(session_id: int, seconds: int = 3600, key: str = UI_KEY) -> str:
    return UiKeys(_settings(ui_secret_key=key)).make_link(session_id, seconds)


def test_student_link_opens_its_session_only(client: TestClient, ledger: Ledger) -> None:
    """A student link shows its session and its receipts, and nothing of another session."""
    session_id = _record_lab(client, ledger)
    other = ledger.store.create_session(
        session_spec(subject_id="student-2", repository_id=99), "test", datetime.now(UTC)
    )
    token = _link(session_id)
    page = client.get(f"/ui/s/{token}")
    assert page.status_code == 200 and "student-1" in page.text
    assert "/ui/attempts/" not in page.text  # no instructor pages from a student view
    attempt_id = ledger.store.all_session_attempts(session_id)[0].id
    assert client.get(f"/ui/s/{token}/attempts/{attempt_id}/receipt").status_code == 200
    assert client.get(f"/ui/s/{_link(other.id)}").status_code == 200
    assert client.get("/ui/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("case", ["expired", "tampered", "rotated"])
def test_bad_student_link_is_refused(client: TestClient, ledger: Ledger, case: str) -> None:
    """An expired, tampered or re-keyed student link answers 403 and shows nothing."""
    session_id = _record_lab(client, ledger)
    good = _link(session_id)
    token = {
        "expired": UiKeys(_settings()).make_link(session_id, 1),
        "tampered": good[:-2] + ("AA" if not good.endswith("AA") else "BB"),
        "rotated": _link(session_id, key="r" * 40),
    }[case]
    if case == "expired":
        time.sleep(2.1)
    page = client.get(f"/ui/s/{token}")
    assert page.status_code == 403
    assert "student-1" not in page.text


def test_receipt_of_another_session_is_refused_through_a_link(
    client: TestClient, ledger: Ledger
) -> None:
    """A student link cannot download a receipt of an attempt in another session."""
    session_id = _record_lab(client, ledger)
    other = ledger.store.create_session(
        session_spec(subject_id="student-2", repository_id=99), "test", datetime.now(UTC)
    )
    attempt_id = ledger.store.all_session_attempts(session_id)[0].id
    answer = client.get(f"/ui/s/{_link(other.id)}/attempts/{attempt_id}/receipt")
    assert answer.status_code == 404


def test_without_a_ui_key_sign_in_is_disabled_and_says_how(ledger: Ledger) -> None:
    """With no LABLEDGER_UI_SECRET_KEY the sign-in page names the setting; /verify still works."""
    with TestClient(create_app(_settings(ui_secret_key=None), ledger.store, SIGNER)) as made:
        page = made.get("/ui/sign-in")
        assert page.status_code == 503 and "LABLEDGER_UI_SECRET_KEY" in page.text
        assert made.get("/verify").status_code == 200
