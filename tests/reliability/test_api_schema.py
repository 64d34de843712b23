"""schemathesis against the OpenAPI schema a real server serves at /openapi.json.

Every /api/v1 operation gets generated requests (schema-valid, schema-violating, and valid
ones aimed at ids that exist), authenticated with the test token. The property: no 5xx, and
every answer conforms to the served schema (status code, content type, headers, body).
LABLEDGER_TEST_SCHEMA_EXAMPLES sets the examples per operation. The deterministic tests at
the end pin the bugs this fuzzing found (all fixed since).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.reliability.conftest import Budget
from tests.reliability.launch import ForkLauncher, ServerProcess, reliability_env
from tests.reliability.results import record_result
from tests.reliability.traffic import AUTH, create_session, plan_deliveries, redeliver

pytestmark = pytest.mark.slow

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]
# Long-polling routes may legitimately hold a request for a while; never for this long.
REQUEST_TIMEOUT_S = 60.0


@dataclass
class ServedApi:
    server: ServerProcess
    schema: Any
    delivery_ids: list[str]


@dataclass
class Tally:
    """What the fuzzing sent and saw, per operation."""

    statuses: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def served_api(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory, fork_launcher: ForkLauncher
) -> Iterator[ServedApi]:
    """A server on a SQLite ledger holding two sessions and a few recorded deliveries."""
    directory = tmp_path_factory.mktemp("api-schema")
    database = directory / "ledger.db"
    database.write_bytes(sqlite_template.read_bytes())
    env = reliability_env(f"sqlite:///{database}", directory)
    server = fork_launcher.start(env, directory / "server.log")
    try:
        create_session(server.url)
        create_session(server.url, branch_glob="feature/*", subject_id="student-s")
        planned = plan_deliveries("schema", 4, random.Random(5), [])
        assert {a.status for a in redeliver(server.url, planned).values()} == {202}
        schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
        yield ServedApi(
            server, schema.include(path_regex="^/api/v1/"), [p.delivery_id for p in planned]
        )
    finally:
        server.stop()


def _operations(api: ServedApi) -> list[Any]:
    return [result.ok() for result in api.schema.get_all_operations()]


def _known_ids(operation: Any, api: ServedApi) -> dict[str, Any]:
    """Path parameters pointing at rows that exist, so that 200 answers get checked too."""
    fixed: dict[str, Any] = {}
    for parameter in operation.path_parameters:
        name = parameter.name
        fixed[name] = api.delivery_ids[0] if name == "delivery_id" else 1
    return fixed


def _strategy(operation: Any, api: ServedApi) -> st.SearchStrategy[Any]:
    # A long poll (`wait`) holds a request up to 30 s by design; fuzz everything else.
    query = {"wait": 0} if any(p.name == "wait" for p in operation.query) else None
    return st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE, query=query),
        operation.as_strategy(GenerationMode.NEGATIVE, query=query),
        operation.as_strategy(
            GenerationMode.POSITIVE, query=query, path_parameters=_known_ids(operation, api)
        ),
    )


def _exercise(operation: Any, api: ServedApi, examples: int, tally: Tally) -> None:
    label = f"{operation.method.upper()} {operation.path}"

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(operation, api))
    def run(case: Any) -> None:
        response = case.call(base_url=api.server.url, headers=AUTH, timeout=REQUEST_TIMEOUT_S)
        tally.statuses[f"{label} -> {response.status_code}"] += 1
        try:
            case.validate_response(response, checks=CHECKS, headers=AUTH)
        except (Failure, FailureGroup) as exc:
            for failure in getattr(exc, "exceptions", [exc]):
                tally.failures.append(f"{label}: {failure.title}: {case.as_curl_command(AUTH)}")

    run()


def test_fuzzed_api_calls_get_no_5xx_and_conform_to_the_schema(
    served_api: ServedApi, budget: Budget
) -> None:
    """Generated /api/v1 requests never get a 5xx and every answer matches the served schema."""
    operations = _operations(served_api)
    assert len(operations) >= 10, [o.path for o in operations]
    tally = Tally()
    for operation in operations:
        _exercise(operation, served_api, budget.schema_examples, tally)
    assert not tally.failures, "\n".join(tally.failures[:10])
    record_result(
        "schemathesis: every /api/v1 operation (served /openapi.json)",
        "sqlite",
        trials=len(operations),
        inputs=sum(tally.statuses.values()),
        held=["no 5xx", "status, content type, headers and body conform"],
        figures={
            "operations": len(operations),
            "examples per operation (max)": budget.schema_examples,
            "schemathesis": schemathesis.__version__,
        },
        test="test_api_schema.py",
    )


def _api_paths(api: ServedApi) -> dict[str, dict[str, Any]]:
    raw = httpx2.get(f"{api.server.url}/openapi.json", timeout=REQUEST_TIMEOUT_S).json()
    return {p: ops for p, ops in raw["paths"].items() if p.startswith("/api/v1/")}


# Found by this suite (undocumented 401/404/409 on the log routes); fixed in af2dcff.
def test_every_api_operation_documents_its_error_answers(served_api: ServedApi) -> None:
    """Every /api/v1 operation documents 401 (token required), and 404 when it takes an id."""
    missing = []
    for path, operations in _api_paths(served_api).items():
        for method, spec in operations.items():
            wanted = {"401"} | ({"404"} if "{" in path else set())
            lacking = wanted - set(spec.get("responses", {}))
            if lacking:
                missing.append(f"{method.upper()} {path}: {sorted(lacking)}")
    assert not missing, missing


def _status(url: str) -> int | str:
    try:
        # A fresh connection each: after a 500 the server drops the kept-alive one.
        return httpx2.get(url, headers=AUTH, timeout=REQUEST_TIMEOUT_S).status_code
    except httpx2.TransportError as exc:
        return repr(exc)


# Found by this suite (500 from SQLite OverflowError / PostgreSQL bigint out of range);
# fixed in 54ab617 and af2dcff.
def test_ids_beyond_int64_are_refused_not_a_server_error(served_api: ServedApi) -> None:
    """An id or size no database column can hold is a 4xx on every /api/v1 route taking one."""
    huge = 2**64
    urls = [
        re.sub(r"\{[^}]+\}", str(huge), path)
        for path, operations in _api_paths(served_api).items()
        if "get" in operations and ("{session_id}" in path or "{attempt_id}" in path)
    ]
    urls.append(f"/api/v1/checkpoint/consistency?old_size={huge}")
    statuses = {url: _status(served_api.server.url + url) for url in urls}
    server_errors = {u: s for u, s in statuses.items() if not isinstance(s, int) or s >= 500}
    assert not server_errors, server_errors


# Found by this suite (422 {error, detail: str} vs the documented HTTPValidationError);
# fixed in af2dcff.
def test_a_refused_session_answers_422_in_the_documented_shape(served_api: ServedApi) -> None:
    """A session due before it opens is refused with a body the schema describes."""
    operation = served_api.schema["/api/v1/sessions"]["POST"]
    case = operation.Case(
        body={
            "lab_id": "lab-x",
            "subject_id": "s",
            "repository_id": 1,
            "opens_at": "2026-01-02T00:00:00Z",
            "due_at": "2026-01-01T00:00:00Z",
        },
        media_type="application/json",
    )
    response = case.call(base_url=served_api.server.url, headers=AUTH)
    assert response.status_code == 422
    case.validate_response(response, checks=[response_schema_conformance], headers=AUTH)


# Found by this suite (FastAPI's 400 {detail} vs the documented ErrorOut); fixed in af2dcff.
def test_an_unparseable_json_body_answers_400_in_the_documented_shape(
    served_api: ServedApi,
) -> None:
    """POST /api/v1/sessions with a body that is not UTF-8 answers 400 in the documented shape."""
    response = httpx2.post(
        f"{served_api.server.url}/api/v1/sessions",
        content=b'\xff\xfe{"lab_id": 1}',
        headers={**AUTH, "content-type": "application/json"},
        timeout=REQUEST_TIMEOUT_S,
    )
    assert response.status_code == 400
    body = response.json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("detail"), str), body


# Found by the fuzzing above (a 500 from UtcDateTime.process_bind_param), fixed in ebac485.
@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+02:01", "9999-12-31T23:59:00-02:00"])
def test_session_times_that_overflow_in_utc_are_refused_not_a_server_error(
    served_api: ServedApi, moment: str
) -> None:
    """A session whose opens_at cannot be expressed in UTC is refused with a 4xx."""
    fields = {"lab_id": "lab-x", "subject_id": "s", "repository_id": 1, "opens_at": moment}
    response = httpx2.post(
        f"{served_api.server.url}/api/v1/sessions",
        json=fields,
        headers=AUTH,
        timeout=REQUEST_TIMEOUT_S,
    )
    assert 400 <= response.status_code < 500, response.text
