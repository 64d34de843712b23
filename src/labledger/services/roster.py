"""Session rosters: a CSV file of sessions to create (`labledger sessions import`).

Columns are the fields of `sessions create`: lab_id, subject_id and repository_id are
required; repository_name, branch_glob (default `*`), opens_at (default: the import's
time), due_at, closes_at and forge (default `github`) may be left out or empty. Row numbers
count as a spreadsheet does: the header is row 1.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime

from pydantic import ValidationError

from labledger.core.errors import InvalidRequest
from labledger.core.model import LabSession, SessionSpec
from labledger.core.service import check_session_spec
from labledger.http.schemas import SessionIn

REQUIRED = ("lab_id", "subject_id", "repository_id")
OPTIONAL = ("repository_name", "branch_glob", "opens_at", "due_at", "closes_at", "forge")
# The CSV column for each SessionIn field whose name differs (as `sessions create` names it).
FIELD_COLUMN = {"repository_full_name": "repository_name"}


@dataclass(frozen=True, slots=True)
class RosterRow:
    row: int
    spec: SessionSpec
    existing: LabSession | None = None  # a session the same row created by an earlier import


def read_roster(text: str, now: datetime) -> list[RosterRow]:
    """Every row as a checked session spec; InvalidRequest naming the first bad row and field."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    _check_header(reader.fieldnames)
    rows = [RosterRow(n, _spec(n, record, now)) for n, record in enumerate(reader, start=2)]
    if not rows:
        raise InvalidRequest("the file holds a header but no rows")
    seen: dict[tuple[object, ...], int] = {}
    for r in rows:
        first = seen.setdefault(_key(r.spec), r.row)
        if first != r.row:
            raise InvalidRequest(f"row {r.row}: repeats row {first} (same lab, subject, repo)")
    return rows


def _check_header(names: Iterable[str] | None) -> None:
    given = [n.strip() for n in names or ()]
    if not given:
        raise InvalidRequest("the file is empty; its first row must name the columns")
    unknown = [n for n in given if n not in REQUIRED + OPTIONAL]
    if unknown:
        raise InvalidRequest(
            f"row 1: unknown column {unknown[0]!r}; columns are {', '.join(REQUIRED + OPTIONAL)}"
        )
    missing = [n for n in REQUIRED if n not in given]
    if missing:
        raise InvalidRequest(f"row 1: column {missing[0]!r} is required")


def _spec(row: int, record: dict[str | None, str | None], now: datetime) -> SessionSpec:
    if None in record:
        raise InvalidRequest(f"row {row}: more cells than columns")
    cells = {(k or "").strip(): (v or "").strip() for k, v in record.items()}
    values: dict[str, object] = {
        field: cells.get(FIELD_COLUMN.get(field, field), "")
        for field in SessionIn.model_fields
        if cells.get(FIELD_COLUMN.get(field, field), "")
    }
    values.setdefault("opens_at", now)
    try:
        spec = SessionIn.model_validate(values).to_spec()
        check_session_spec(spec)
    except ValidationError as exc:
        error = exc.errors(include_url=False, include_input=False)[0]
        field = str(error["loc"][0]) if error["loc"] else "?"
        problem = "required, but the cell is empty" if error["type"] == "missing" else error["msg"]
        raise InvalidRequest(f"row {row}, {FIELD_COLUMN.get(field, field)}: {problem}") from None
    except InvalidRequest as exc:
        raise InvalidRequest(f"row {row}: {exc}") from None
    return spec


def _key(spec: SessionSpec) -> tuple[object, ...]:
    return (spec.lab_id, spec.subject_id, spec.forge, spec.repository_id, spec.branch_glob)


def match_existing(rows: list[RosterRow], existing: Iterable[LabSession]) -> list[RosterRow]:
    """Re-importing a row finds the session it created: the row is then skipped. A row whose
    dates differ from that session's (as created) is refused: dates change by an audited
    deadline change, never by an import."""
    by_key = {_key(s.spec): s for s in existing}
    matched = []
    for r in rows:
        found = by_key.get(_key(r.spec))
        if found is not None:
            _check_same_dates(r, found)
        matched.append(replace(r, existing=found))
    return matched


def _check_same_dates(r: RosterRow, found: LabSession) -> None:
    created = {
        "due_at": found.original_due_at,
        "closes_at": found.original_closes_at,
    }
    for name, was in created.items():
        if getattr(r.spec, name) != was:
            raise InvalidRequest(
                f"row {r.row}, {name}: session {found.id} exists for this lab, subject and "
                f"repository with {name} {was.isoformat() if was else 'empty'}; "
                "change it with a deadline change"
            )
