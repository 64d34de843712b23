"""Open gaps in push chains (contract invariant 11)."""

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from labledger.compose import SqlStore
from labledger.http import schemas
from labledger.http.schemas import GapList, GapOut


def gaps_router(store: SqlStore, require_read: Callable[..., Awaitable[str]]) -> APIRouter:
    router = APIRouter(
        prefix="/api/v1",
        tags=["completeness"],
        dependencies=[Depends(require_read)],
        responses=schemas.API_ERRORS,
    )

    @router.get("/gaps", response_model=GapList)
    def open_gaps(
        forge: Annotated[str | None, Query(pattern="^[a-z]{1,16}$")] = None,
        repository_id: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    ) -> GapList:
        """Recorded pushes whose `before` no recorded push of their ref ended at: at least
        one push is missing before each. A gap closes when the missing push is recorded."""
        found = store.push_chain_gaps(forge=forge, repository_id=repository_id)
        return GapList(items=[GapOut.of(g) for g in found])

    return router
