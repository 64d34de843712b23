"""/verify in Chromium: the same verdict as `labledger verify-receipt` on every vector,
each step shown in plain words, and no network request (it works saved to disk)."""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from playwright.sync_api import Browser, Page

from labledger.core.errors import LedgerError
from labledger.core.note import VerifierKey
from labledger.core.receipt import Receipt, verify_receipt
from tests.browser.conftest import Served

pytestmark = pytest.mark.slow
VECTORS = Path(__file__).parents[1] / "fixtures" / "receipts"


def _python_verdict(receipt: dict[str, Any], key: str) -> str:
    """What `labledger verify-receipt` decides, through the same core functions."""
    try:
        verify_receipt(Receipt.from_json(copy.deepcopy(receipt)), VerifierKey.parse(key))
    except (LedgerError, ValueError):
        return "invalid"
    return "valid"


def _flip(b64: str, at: int = 0) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[at % len(raw)] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def tampered_variants(receipt: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """One changed copy per readable field, proof element, index, size and signature byte."""
    for field, value in receipt["entry"]["content"].items():
        changed = copy.deepcopy(receipt)
        if isinstance(value, bool):
            new: Any = not value
        elif isinstance(value, int):
            new = value + 1
        elif isinstance(value, str):
            new = value[:-1] + ("0" if not value.endswith("0") else "1") if value else "x"
        else:
            new = None if value is not None else "forged"
        changed["entry"]["content"][field] = new
        yield f"content.{field}", changed
    for i in range(len(receipt["inclusion_proof"])):
        changed = copy.deepcopy(receipt)
        changed["inclusion_proof"][i] = _flip(changed["inclusion_proof"][i])
        yield f"inclusion_proof[{i}]", changed
    for field, delta in (("leaf_index", 1), ("tree_size", 1)):
        changed = copy.deepcopy(receipt)
        changed[field] += delta
        yield field, changed
    note = receipt["checkpoint"]
    text, _, signature_line = note.rstrip("\n").rpartition("\n")
    prefix, _, encoded = signature_line.rpartition(" ")
    for at in (0, 4, 20, 67):  # key id, first, middle and last signature byte
        changed = copy.deepcopy(receipt)
        changed["checkpoint"] = f"{text}\n{prefix} {_flip(encoded, at)}\n"
        yield f"signature byte {at}", changed
    changed = copy.deepcopy(receipt)
    changed["checkpoint"] = note.replace("\n", "\n", 1).replace(note.split("\n")[1], "999", 1)
    yield "checkpoint tree size", changed


def _receipt(served: Served, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = served.api("GET", f"/api/v1/attempts/{served.attempt_ids[0]}/proof")
        if answer.status_code == 200:
            return dict(answer.json())
        time.sleep(0.2)
    raise AssertionError("no checkpoint covered the attempt")


def _browser_verdict(page: Page, receipt: dict[str, Any] | str, key: str) -> dict[str, Any]:
    """The page's verdict; a str is the file's own text (duplicate keys and all)."""
    text = receipt if isinstance(receipt, str) else json.dumps(receipt)
    return dict(page.evaluate("([r, k]) => window.labledgerVerifyReceipt(r, k)", [text, key]))


def _shared_vectors() -> list[tuple[str, str, str, str]]:
    """The known-answer receipts kept in tests/fixtures/receipts, also run by the CLI tests."""
    index = VECTORS / "vectors.json"
    if not index.exists():
        return []
    listed = json.loads(index.read_text())
    key = (VECTORS / listed["public_key"]).read_text().strip()
    return [
        (v["file"], (VECTORS / v["file"]).read_text(), key, v["verdict"]) for v in listed["vectors"]
    ]


def test_page_and_cli_agree_on_every_tampered_receipt(browser: Browser, served: Served) -> None:
    """A real receipt is valid in both; every tampered copy is invalid in both."""
    receipt = _receipt(served)
    page = browser.new_page()
    page.goto(served.url + "/verify")
    first = _browser_verdict(page, receipt, served.public_key)
    assert first["verdict"] == "valid", first["steps"]
    assert _python_verdict(receipt, served.public_key) == "valid"
    disagreements = {}
    for name, changed in tampered_variants(receipt):
        browser_says = _browser_verdict(page, changed, served.public_key)["verdict"]
        cli_says = _python_verdict(changed, served.public_key)
        if (browser_says, cli_says) != ("invalid", "invalid"):
            disagreements[name] = (browser_says, cli_says)
    assert disagreements == {}


def test_page_runs_the_shared_vectors(browser: Browser, served: Served) -> None:
    """The page gives each shared known-answer receipt its recorded verdict."""
    vectors = _shared_vectors()
    if not vectors:
        pytest.skip("tests/fixtures/receipts/vectors.json not present")
    page = browser.new_page()
    page.goto(served.url + "/verify")
    wrong = {
        name: got["steps"][-1]
        for name, receipt, key, expected in vectors
        if (got := _browser_verdict(page, receipt, key))["verdict"] != expected
    }
    assert wrong == {}


def test_page_names_the_doctored_field(browser: Browser, served: Served) -> None:
    """Changing pushed_at in a receipt makes the page say so, naming pushed_at."""
    receipt = _receipt(served)
    receipt["entry"]["content"]["pushed_at"] = "2025-11-24T15:59:00.000000Z"
    page = browser.new_page()
    page.goto(served.url + "/verify")
    outcome = _browser_verdict(page, receipt, served.public_key)
    assert outcome["verdict"] == "invalid" and outcome["field"] == "pushed_at"


def test_student_checks_a_receipt_through_the_form_without_network(
    browser: Browser, served: Served, tmp_path: Path
) -> None:
    """Saved to disk with its assets, the page verifies a pasted receipt making no request."""
    receipt = _receipt(served)
    (tmp_path / "ui" / "static").mkdir(parents=True)
    (tmp_path / "verify.html").write_text(httpx2.get(served.url + "/verify").text)
    for asset in ("ui.css", "receipt.js", "verify-page.js"):
        content = httpx2.get(f"{served.url}/ui/static/{asset}").text
        (tmp_path / "ui" / "static" / asset).write_text(content)
    page = browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto((tmp_path / "verify.html").as_uri())
    page.get_by_label("or paste it here").fill(json.dumps(receipt))
    page.get_by_label("Public key (one line: name+id+key)").fill(served.public_key)
    page.get_by_role("button", name="Check the receipt").click()
    page.wait_for_selector("#result[data-verdict]")
    assert page.locator("#result").get_attribute("data-verdict") == "valid"
    assert "signed tree" in page.locator("#verdict").inner_text()
    assert page.locator("#steps li.ok").count() == 5
    assert [u for u in requests if not u.startswith("file://")] == []


def test_served_key_button_warns_it_proves_less(browser: Browser, served: Served) -> None:
    """Using the server's own key fills it in and says that it proves less than a published one."""
    page = browser.new_page()
    page.goto(served.url + "/verify")
    page.get_by_role("button", name="Use the key this server shows").click()
    assert page.get_by_label("Public key (one line: name+id+key)").input_value() == (
        served.public_key
    )
    assert "same server" in page.locator("#key-source").inner_text()
