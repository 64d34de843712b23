"""The web view in Chromium: sign-in, every page, student links, axe-core (both databases)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import AXE, READ_TOKEN, Served

pytestmark = pytest.mark.slow


def _sign_in(page: Page, served: Served, token: str = READ_TOKEN) -> None:
    page.goto(served.url + "/ui/sign-in")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(served.url + "/ui/")


def _serious_violations(page: Page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("async () => (await axe.run()).violations")
    return [
        f"{v['id']} ({v['impact']}): {v['help']}"
        for v in found
        if v["impact"] in ("serious", "critical")
    ]


def _instructor_pages(served: Served) -> list[str]:
    return [
        "/ui/",
        "/ui/labs/lab-1",
        f"/ui/sessions/{served.session_id}",
        f"/ui/attempts/{served.attempt_ids[0]}",
        "/verify",
    ]


def test_sign_in_every_page_and_sign_out(browser: Browser, served: Served) -> None:
    """A read token signs in through the form; every page renders its data; sign-out ends it."""
    page = browser.new_page()
    _sign_in(page, served)
    assert page.get_by_role("link", name="lab-1").is_visible()
    page.get_by_role("link", name="lab-1").click()
    assert page.get_by_role("link", name="student-1").is_visible()
    page.get_by_role("link", name="student-1").click()
    assert page.locator("svg.timeline circle.dot").count() == 3
    assert page.locator("svg.timeline circle.dot.late").count() == 1
    assert page.locator("svg.timeline g.push.forced").count() == 1
    page.goto(served.url + f"/ui/attempts/{served.attempt_ids[0]}")
    assert page.get_by_role("link", name="Download receipt").is_visible()
    assert "ada" in page.content()
    page.get_by_role("button", name="Sign out").click()
    page.goto(served.url + "/ui/")
    assert page.url == served.url + "/ui/sign-in"


def test_lab_overview_sorts_and_filters(browser: Browser, served: Served) -> None:
    """The lab table sorts by a column heading and filters by typed text, without a reload."""
    page = browser.new_page()
    _sign_in(page, served)
    page.goto(served.url + "/ui/labs/lab-1")
    rows = page.locator("#sessions tbody tr")
    assert rows.count() == 2
    page.get_by_role("button", name="Subject").click()
    page.get_by_role("button", name="Subject").click()
    assert rows.first.inner_text().startswith("student-2")
    page.get_by_label("Filter").fill("student-1")
    assert page.locator("#sessions tbody tr:visible").count() == 1


def test_lab_overview_marks_and_filters_by_mark(browser: Browser, served: Served) -> None:
    """The overview marks a session's force-push and unconfirmed times, shows only the
    sessions with the chosen mark, and downloads the same sessions as CSV."""
    page = browser.new_page()
    _sign_in(page, served)
    page.goto(served.url + "/ui/labs/lab-1")
    marked = page.locator("#sessions tbody tr", has_text="student-1")
    assert marked.locator(".tag.force").inner_text() == "1 force-push"
    assert marked.locator(".tag.unconfirmed").first.is_visible()
    assert page.locator("#sessions .tag.gap").count() == 0
    visible = page.locator("#sessions tbody tr:visible")
    page.get_by_label("Show").select_option("force")
    assert visible.count() == 1 and visible.first.inner_text().startswith("student-1")
    page.get_by_label("Show").select_option("unverified")
    assert visible.count() == 2
    page.get_by_label("Show").select_option("gap")
    assert visible.count() == 0
    page.get_by_label("Show").select_option("")
    page.get_by_label("Filter").fill("student-2")
    assert visible.count() == 1
    with page.expect_download() as download:
        page.get_by_role("link", name="Download CSV").click()
    sheet = Path(download.value.path()).read_text().splitlines()
    header = sheet[0].split(",")
    rows = {r.split(",")[1]: r.split(",") for r in sheet[1:]}
    assert rows["student-1"][header.index("force_pushes")] == "1"
    assert rows["student-2"][header.index("force_pushes")] == "0"


def test_no_page_without_a_session(browser: Browser, served: Served) -> None:
    """Without signing in, every instructor page lands on the sign-in form."""
    page = browser.new_page()
    for path in _instructor_pages(served)[:-1]:
        page.goto(served.url + path)
        assert page.url == served.url + "/ui/sign-in", path


def test_every_page_has_no_serious_accessibility_violations(
    browser: Browser, served: Served
) -> None:
    """axe-core finds no serious or critical violation on any page, signed in or as a student."""
    page = browser.new_page(bypass_csp=True)  # axe-core is injected as a script of the test
    _sign_in(page, served)
    problems = {}
    for path in [*_instructor_pages(served), "/ui/sign-in"]:
        page.goto(served.url + path)
        problems[path] = _serious_violations(page)
    link = served.api("POST", f"/api/v1/sessions/{served.session_id}/links").json()["path"]
    page.goto(served.url + link)
    problems[link] = _serious_violations(page)
    assert {p: v for p, v in problems.items() if v} == {}


def test_pages_are_readable_on_a_phone(browser: Browser, served: Served) -> None:
    """At a phone's width no page scrolls sideways as a whole (tables scroll in their box)."""
    page = browser.new_page(viewport={"width": 375, "height": 740})
    _sign_in(page, served)
    for path in _instructor_pages(served):
        page.goto(served.url + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, path


def test_student_link_shows_its_session_and_downloads_receipts(
    browser: Browser, served: Served
) -> None:
    """A student link opens its own session's timeline and attempts, with receipt downloads."""
    answer = served.api("POST", f"/api/v1/sessions/{served.session_id}/links", json={})
    assert answer.status_code == 201, answer.text
    page = browser.new_page()
    page.goto(served.url + answer.json()["path"])
    assert page.locator("h1").inner_text().startswith("student-1")
    assert page.locator("svg.timeline circle.dot").count() == 3
    _wait_for_checkpoint(served)
    with page.expect_download() as download:
        page.get_by_role("link", name="receipt", exact=True).first.click()
    receipt = json.loads(download.value.path().read_text())
    assert receipt["entry"]["content"]["session_id"] == served.session_id
    page.goto(served.url + "/ui/")
    assert page.url == served.url + "/ui/sign-in"


@pytest.mark.parametrize("case", ["expired", "tampered", "other-session-receipt"])
def test_bad_student_links_show_nothing(browser: Browser, served: Served, case: str) -> None:
    """An expired or tampered link, or a receipt of another session, shows no ledger data."""
    seconds = 1 if case == "expired" else 3600
    made = served.api(
        "POST", f"/api/v1/sessions/{served.session_id}/links", json={"expires": f"{seconds}s"}
    ).json()["path"]
    page = browser.new_page()
    if case == "expired":
        time.sleep(2.1)
        target = made
    elif case == "tampered":
        target = made[:-3] + ("xyz" if not made.endswith("xyz") else "abc")
    else:
        other = served.api(
            "POST", f"/api/v1/sessions/{served.other_session_id}/links", json={}
        ).json()["path"]
        target = f"{other}/attempts/{served.attempt_ids[0]}/receipt"
    answer = page.goto(served.url + target)
    assert answer is not None and answer.status in (403, 404)
    assert "student-1" not in page.content()


def _wait_for_checkpoint(served: Served, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if served.api("GET", f"/api/v1/attempts/{served.attempt_ids[-1]}/proof").status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError("no checkpoint covered the attempts")
