"""A real `labledger serve` with recorded pushes, and Debian's Chromium driven by Playwright.

Without Chromium (`apt-get install chromium`) these tests skip, except under CI=true, where
.ci/run installs it and a missing browser is an error.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from labledger.storage import migrate
from labledger.storage.engine import make_engine
from tests.conftest import PG_ENV, PgDatabases
from tests.integration.servers import running_servers
from tests.support import SIGNER, body_of, commit, headers_for, push_payload

CHROMIUM = os.environ.get("LABLEDGER_TEST_CHROMIUM", "/usr/bin/chromium")
AXE = Path(__file__).parents[2] / "node_modules" / "axe-core" / "axe.min.js"
READ_TOKEN = "read-token-for-the-browser-tests-000001"
ADMIN_TOKEN = "admin-token-for-the-browser-tests-00001"
UI_KEY = "browser-test-ui-key-" + "0" * 20


# Module scope: Playwright's sync API keeps an event loop running in this thread while it is
# open, which tests elsewhere that run their own (asyncio.run) would then trip over.
@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    if not shutil.which(CHROMIUM) or not AXE.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests need {CHROMIUM} and {AXE} (npm ci)", pytrace=False)
        pytest.skip("Chromium or axe-core not installed (apt-get install chromium; npm ci)")
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    made = playwright_driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    yield made
    made.close()


@dataclass
class Served:
    url: str
    session_id: int
    other_session_id: int
    attempt_ids: list[int]
    public_key: str

    def api(self, method: str, path: str, **kwargs: object) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        return httpx2.request(method, self.url + path, headers=headers, timeout=10, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def served_database(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pg_databases: PgDatabases | None,
) -> Iterator[str]:
    """One migrated database per test module and dialect: the pages only read it."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("browser") / "ledger.db"
        engine = make_engine(f"sqlite:///{path}")
        migrate.upgrade(engine, origin=SIGNER.name)
        engine.dispose()
        yield f"sqlite:///{path}"
        return
    if pg_databases is None:
        pytest.skip(f"PostgreSQL not configured ({PG_ENV})")
    url = pg_databases.create()
    yield url
    pg_databases.drop(url)


@pytest.fixture(scope="module")
def served(served_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A server with two sessions and three attempts (one late, one force-pushed)."""
    extra = {
        "LABLEDGER_API_TOKENS": f"read:{READ_TOKEN},admin:{ADMIN_TOKEN}",
        "LABLEDGER_UI_SECRET_KEY": UI_KEY,
    }
    logs = tmp_path_factory.mktemp("server")
    with running_servers(served_database, 1, logs, **extra) as (url,):
        made = Served(url, 0, 0, [], "")
        session = made.api("POST", "/api/v1/sessions", json=_session("student-1", 186853002))
        other = made.api("POST", "/api/v1/sessions", json=_session("student-2", 42))
        assert session.status_code == 201 and other.status_code == 201, session.text
        made.session_id, made.other_session_id = session.json()["id"], other.json()["id"]
        on_time = push_payload([commit(1), commit(2)], pushed_at=1_763_990_000)
        late = push_payload(
            [commit(3)], pushed_at=1_764_100_000, forced=True, before=commit(2)["id"]
        )
        for payload in (on_time, late):
            body = body_of(payload)
            answer = httpx2.post(url + "/webhooks/github", content=body, headers=headers_for(body))
            assert answer.status_code == 202, answer.text
            made.attempt_ids.extend(answer.json()["attempt_ids"])
        made.public_key = httpx2.get(url + "/public-key").text.strip()
        yield made


def _session(subject: str, repository_id: int) -> dict[str, object]:
    return {
        "lab_id": "lab-1",
        "subject_id": subject,
        "forge": "github",
        "repository_id": repository_id,
        "repository_full_name": f"course/lab-1-{subject}",
        "opens_at": "2025-01-01T00:00:00Z",
        "due_at": "2025-11-24T16:00:00Z",
    }
