"""The routes' path and query parameter types, and their raw JSON response (FastAPI's).

Kept apart from http/schemas.py, whose models the CLI shares: importing a model must not
import the web framework (tests/integration/test_cli_startup.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query, Response
from pydantic_core import to_json

from labledger.http.schemas import Digits

# Ledger ids are 64-bit: a larger id in a path is refused (422) before it reaches the driver.
RowId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a ledger id"), Digits]
Limit = Annotated[int, Query(ge=1, le=500), Digits]


def json_response(content: object, status_code: int = 200) -> Response:
    """Bytes built by the `*_json` builders of http/schemas.py, answered without a model."""
    return Response(to_json(content), status_code=status_code, media_type="application/json")
