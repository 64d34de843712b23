"""Run the long reliability suite and write RELIABILITY.md from what this run measured.

    uv run python -m tests.reliability.report [--out RELIABILITY.md] [--profile long|fast]

The tests append their figures to a JSON-lines file (LABLEDGER_TEST_RELIABILITY_RESULTS);
pytest's JUnit XML says what passed, failed or is a known bug (strict xfail). The existing
hostile-input, authorization, least-privilege and duplicate-storm suites run alongside.
Exit status: pytest's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.reliability.conftest import PROFILE_ENV, Budget
from tests.reliability.results import RESULTS_ENV

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ALONGSIDE = {
    "tests/unit/test_github_parser.py": "hostile payloads and signatures at the parser "
    "(hypothesis: octokit schema, mutated fixtures, 2,048 commits, NUL, invalid UTF-8, ...)",
    "tests/integration/test_webhook_hostile.py": "hostile payloads through the real store on "
    "SQLite and PostgreSQL (hypothesis): a clear 4xx with nothing written, or an exact record",
    "tests/integration/test_http.py::test_every_api_route_requires_a_valid_token": "every "
    "/api/v1 route of the app refuses a missing or wrong token (routes enumerated)",
    "tests/contract/test_app_role.py": "least privilege: the PostgreSQL app role cannot UPDATE, "
    "DELETE, TRUNCATE, ALTER or DROP ledger tables",
    "tests/integration/test_servers.py": "two server processes on one database under 50 "
    "concurrent copies of one delivery (PostgreSQL as the app role, and SQLite)",
}


@dataclass(frozen=True)
class Outcome:
    file: str
    name: str
    status: str  # passed | failed | xfailed | skipped
    message: str


def run_suite(profile: str, results: Path, junit: Path) -> int:
    env = dict(os.environ)
    env.setdefault("LABLEDGER_TEST_PG_URL", DEFAULT_PG_URL)
    env[PROFILE_ENV] = profile
    env[RESULTS_ENV] = str(results)
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/reliability",
        *ALONGSIDE,
        "-p",
        "no:cacheprovider",
        "-q",
        f"--junitxml={junit}",
        "-o",
        "junit_family=xunit2",
        f"--basetemp={junit.parent / 'basetemp'}",
    ]
    return subprocess.run(command, cwd=ROOT, env=env, check=False).returncode


def read_junit(path: Path) -> list[Outcome]:
    outcomes = []
    for case in ET.parse(path).getroot().iter("testcase"):
        file = case.get("classname", "").replace(".", "/") + ".py"
        status, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                status, message = "failed", child.get("message", "")
            elif child.tag == "skipped":
                xfail = child.get("type") == "pytest.xfail"
                status, message = ("xfailed" if xfail else "skipped"), child.get("message", "")
        outcomes.append(Outcome(file, case.get("name", ""), status, message))
    return outcomes


def read_results(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def _cell(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text.replace("|", "\\|").replace("\n", " ")


def _figures(figures: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {_cell(v)}" for k, v in figures.items())


def scenario_table(results: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| scenario | database | trials | inputs | what held | figures |",
        "| --- | --- | ---: | ---: | --- | --- |",
    ]
    for r in results:
        held = "<br>".join(_cell(h) for h in r["held"])
        lines.append(
            f"| {_cell(r['scenario'])} | {r['database']} | {r['trials']} | {r['inputs']} "
            f"| {held} | {_figures(r['figures'])} |"
        )
    return lines


def alongside_table(outcomes: list[Outcome]) -> list[str]:
    lines = ["| suite | what it tries | tests passed |", "| --- | --- | ---: |"]
    for target, what in ALONGSIDE.items():
        file, _, name = target.partition("::")
        mine = [o for o in outcomes if o.file == file and (not name or o.name.startswith(name))]
        passed = sum(o.status == "passed" for o in mine)
        lines.append(f"| `{target}` | {_cell(what)} | {passed} of {len(mine)} |")
    return lines


def known_bugs(outcomes: list[Outcome]) -> list[str]:
    bugs = [o for o in outcomes if o.status == "xfailed"]
    if not bugs:
        return ["None."]
    lines = ["| test | bug |", "| --- | --- |"]
    lines += [
        f"| `{o.file}::{o.name}` | {_cell(o.message.removeprefix('reason: '))} |" for o in bugs
    ]
    return lines


def problems(outcomes: list[Outcome]) -> list[str]:
    bad = [o for o in outcomes if o.status in ("failed", "skipped")]
    if not bad:
        return ["None: every test passed or failed as a known bug, and none was skipped."]
    return [f"- **{o.status}** `{o.file}::{o.name}`: {_cell(o.message[:400])}" for o in bad]


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip()


def header(outcomes: list[Outcome], profile: str, seconds: float) -> list[str]:
    counts = {s: sum(o.status == s for o in outcomes) for s in ("passed", "xfailed", "failed")}
    dirty = " (with uncommitted changes)" if _git("status", "--porcelain", "--", "src") else ""
    budget = Budget.from_env({PROFILE_ENV: profile})
    return [
        "# Reliability",
        "",
        "Generated by `make reliability` (`uv run python -m tests.reliability.report`); do not "
        "edit by hand. Every figure below comes from the run described here.",
        "",
        f"- run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, profile `{profile}`, "
        f"{time.strftime('%H:%M:%S', time.gmtime(seconds))} on {os.cpu_count()} cores",
        f"- code: commit `{_git('rev-parse', '--short', 'HEAD')}`{dirty}",
        f"- tests: {counts['passed']} passed, {counts['xfailed']} known bugs (strict xfail), "
        f"{counts['failed']} failed",
        f"- budget: {', '.join(f'{k}={v}' for k, v in vars(budget).items())}",
    ]


def render(
    outcomes: list[Outcome], results: list[dict[str, Any]], profile: str, seconds: float
) -> str:
    sections = [
        header(outcomes, profile, seconds),
        ["## Faults and abuse against real server processes", "", *scenario_table(results)],
        [
            "## Hostile input, authorization, least privilege (run alongside)",
            "",
            *alongside_table(outcomes),
        ],
        [
            "## Known bugs (strict xfail: failing now, the suite fails once fixed)",
            "",
            *known_bugs(outcomes),
        ],
        ["## Failures and skips in this run", "", *problems(outcomes)],
    ]
    return "\n\n".join("\n".join(s) for s in sections) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "RELIABILITY.md")
    parser.add_argument("--profile", choices=["long", "fast"], default="long")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="labledger-reliability-") as scratch:
        results, junit = Path(scratch) / "results.jsonl", Path(scratch) / "junit.xml"
        started = time.monotonic()
        code = run_suite(args.profile, results, junit)
        seconds = time.monotonic() - started
        outcomes = read_junit(junit) if junit.exists() else []
        args.out.write_text(render(outcomes, read_results(results), args.profile, seconds))
    print(f"wrote {args.out} (pytest exit status {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
