"""Tamper-evidence routes: the newest checkpoint, consistency proofs, attempt receipts."""

import base64
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse

from labledger.compose import SqlLog, SqlStore
from labledger.core.errors import InvalidRequest, NotFound
from labledger.core.note import VerifierKey
from labledger.http import schemas
from labledger.http.params import RowId


def public_key_router(key: VerifierKey, log: SqlLog) -> APIRouter:
    router = APIRouter(tags=["tamper evidence"])

    @router.get("/public-key", response_class=PlainTextResponse)
    def public_key() -> str:
        """The log's verifier key (C2SP signed-note vkey). Public: anyone may check receipts."""
        return key.encode() + "\n"

    @router.get(
        "/checkpoint",
        response_class=PlainTextResponse,
        responses={404: {"description": "no checkpoint signed yet"}},
    )
    def public_checkpoint() -> str:
        """The newest checkpoint as a C2SP signed note, for witnesses: no token needed (it
        holds the tree size and root hash only, nothing about any student)."""
        latest = log.latest_checkpoint()
        if latest is None:
            raise NotFound("checkpoint", "(none signed yet)")
        return latest.note

    return router


def log_router(
    store: SqlStore, log: SqlLog, key: VerifierKey, require_token: Callable[..., Awaitable[str]]
) -> APIRouter:
    router = APIRouter(
        prefix="/api/v1",
        tags=["tamper evidence"],
        dependencies=[Depends(require_token)],
        responses=schemas.API_ERRORS,
    )

    @router.get("/checkpoint", response_model=schemas.CheckpointOut)
    def latest_checkpoint() -> schemas.CheckpointOut:
        """The newest signed checkpoint."""
        latest = log.latest_checkpoint()
        if latest is None:
            raise NotFound("checkpoint", "(none signed yet)")
        return schemas.CheckpointOut(
            tree_size=latest.tree_size,
            root_hash=f"sha256:{latest.root_hash.hex()}",
            created_at=latest.created_at,
            note=latest.note,
            public_key=key.encode(),
        )

    @router.get("/checkpoint/consistency", response_model=schemas.ConsistencyOut)
    def consistency(
        old_size: Annotated[int, Query(ge=1, le=2**63 - 1), schemas.Digits],
        new_size: Annotated[int | None, Query(ge=1, le=2**63 - 1), schemas.Digits] = None,
    ) -> schemas.ConsistencyOut:
        """Proof that the tree at new_size (default: newest) extends the tree at old_size."""
        new = log.latest_checkpoint() if new_size is None else log.checkpoint_at(new_size)
        old = log.checkpoint_at(old_size)
        if old is None or new is None:
            raise NotFound("checkpoint", f"of size {old_size if old is None else new_size}")
        if old.tree_size > new.tree_size:
            raise InvalidRequest("old_size is larger than new_size")
        proof = log.consistency_proof(old.tree_size, new.tree_size)
        return schemas.ConsistencyOut(
            old_size=old.tree_size,
            new_size=new.tree_size,
            old_root=f"sha256:{old.root_hash.hex()}",
            new_root=f"sha256:{new.root_hash.hex()}",
            proof=[base64.b64encode(h).decode() for h in proof],
        )

    @router.get("/attempts/{attempt_id}/proof", response_model=schemas.ReceiptOut)
    def attempt_proof(attempt_id: RowId) -> schemas.ReceiptOut:
        """A receipt for one attempt: check it offline with `labledger verify-receipt`."""
        store.get_attempt(attempt_id)
        return schemas.ReceiptOut.model_validate(log.receipt("attempt", attempt_id).to_json())

    return router
