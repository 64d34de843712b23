"""Figures the reliability tests report, appended as JSON lines to a file named by an env var.

`python -m tests.reliability.report` sets LABLEDGER_TEST_RELIABILITY_RESULTS, runs the suite
and turns the lines into RELIABILITY.md. Without the variable nothing is written.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

RESULTS_ENV = "LABLEDGER_TEST_RELIABILITY_RESULTS"
_lock = threading.Lock()


def record_result(
    scenario: str,
    database: str,
    *,
    trials: int,
    inputs: int,
    held: list[str],
    figures: dict[str, object],
    test: str = "",
) -> None:
    """Append one scenario's figures; called only once its assertions have passed."""
    target = os.environ.get(RESULTS_ENV)
    if not target:
        return
    line = {
        "scenario": scenario,
        "database": database,
        "trials": trials,
        "inputs": inputs,
        "held": held,
        "figures": figures,
        "test": test,
    }
    with _lock, Path(target).open("a", encoding="utf-8") as out:
        out.write(json.dumps(line, sort_keys=True, default=str) + "\n")
