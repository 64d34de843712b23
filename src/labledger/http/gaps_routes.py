"""Open gaps in push chains (contract invariant 11)."""

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from labledger.compose import ChainGap, SqlStore
from labledger.http import schemas


class GapOut(BaseModel):
    forge: str
    repository_id: int
    repository_full_name: str
    ref: str
    push_id: int = Field(description="The recorded push whose `before` no recorded push left")
    delivery_id: str
    missing_after: str = Field(description="The head a missing push must have left the ref at")
    after: str
    pushed_at: datetime | None
    received_at: datetime

    @classmethod
    def of(cls, g: ChainGap) -> "GapOut":
        return cls(
            forge=g.forge,
            repository_id=g.repository_id,
            repository_full_name=g.repository_full_name,
            ref=g.ref,
            push_id=g.push_id,
            delivery_id=g.delivery_id,
            missing_after=g.missing_after,
            after=g.after,
            pushed_at=g.pushed_at,
            received_at=g.received_at,
        )


class GapList(BaseModel):
    items: list[GapOut]


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
