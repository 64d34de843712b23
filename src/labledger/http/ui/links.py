"""Read-only student links: `POST /api/v1/sessions/{id}/links` (admin) and the CLI verb."""

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from labledger.compose import SqlStore
from labledger.core.errors import InvalidRequest
from labledger.http import schemas
from labledger.http.params import RowId
from labledger.http.ui.access import DEFAULT_LINK_DURATION, UiKeys, duration_seconds


class LinkIn(BaseModel):
    expires: str = Field(
        default=DEFAULT_LINK_DURATION,
        max_length=20,
        description="How long the link stays valid: a number and s, m, h or d (e.g. 30d)",
    )


class LinkOut(BaseModel):
    session_id: int
    path: str = Field(description="Append to the server's address: /ui/s/<signed token>")
    expires_at: datetime


def make_link(keys: UiKeys, store: SqlStore, session_id: int, expires: str) -> LinkOut:
    """A signed read-only link to one existing session; needs LABLEDGER_UI_SECRET_KEY."""
    if not keys.enabled:
        raise InvalidRequest("set LABLEDGER_UI_SECRET_KEY to make student links")
    try:
        seconds = duration_seconds(expires)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    store.get_session(session_id)
    token = keys.make_link(session_id, seconds)
    expires_at = datetime.fromtimestamp(int(time.time()) + seconds, UTC)
    return LinkOut(session_id=session_id, path=f"/ui/s/{token}", expires_at=expires_at)


def link_router(
    keys: UiKeys, store: SqlStore, require: Callable[[str], Callable[..., Awaitable[str]]]
) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["ledger"], responses=schemas.API_ERRORS)

    @router.post("/sessions/{session_id}/links", response_model=LinkOut, status_code=201)
    def session_link(
        session_id: RowId,
        actor: Annotated[str, Depends(require("admin"))],
        body: LinkIn | None = None,
    ) -> LinkOut:
        """A read-only link for one session's student: its timeline, attempts and receipts.

        Signed with LABLEDGER_UI_SECRET_KEY; rotating that key revokes every link."""
        return make_link(keys, store, session_id, (body or LinkIn()).expires)

    return router
