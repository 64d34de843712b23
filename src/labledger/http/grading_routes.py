"""Verification results, deadline changes, grading summaries and the change feed."""

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from labledger.compose import SqlStore
from labledger.core.errors import MalformedPayload, NotFound, VerificationConflict
from labledger.core.model import CLOCK_SKEW
from labledger.core.service import check_session_spec, check_verification
from labledger.http import grading_schemas as gs
from labledger.http import schemas
from labledger.http.feed_notifier import FeedNotifier
from labledger.http.params import Limit, RowId
from labledger.http.schemas import DecimalDigits, Digits
from labledger.services import grading

T = TypeVar("T")
FEED_KINDS = ("attempt", "push", "verification")
MAX_WAIT_SECONDS = 30.0
POLL_SECONDS = 0.2
# Worker threads the feed's reads may hold at once. Long-polls skip the API lane (they would
# hold it while they wait), so without this three hundred of them arriving together queue
# their reads ahead of every webhook's thread.
FEED_THREADS = 4


def grading_router(
    store: SqlStore,
    require: Callable[[str], Callable[..., Awaitable[str]]],
    skew: timedelta = CLOCK_SKEW,
    feed_max_waiters: int = 100,
) -> APIRouter:
    router = APIRouter(
        prefix="/api/v1",
        tags=["grading"],
        dependencies=[Depends(require("read"))],
        responses=schemas.API_ERRORS,
    )
    notifier = FeedNotifier(store.log_head, POLL_SECONDS, feed_max_waiters)
    feed_threads = anyio.CapacityLimiter(FEED_THREADS)

    async def read(function: Callable[..., T], *args: object) -> T:
        return await anyio.to_thread.run_sync(function, *args, limiter=feed_threads)

    Grader = Annotated[str, Depends(require("grader"))]
    Admin = Annotated[str, Depends(require("admin"))]

    @router.post(
        "/attempts/{attempt_id}/verifications",
        response_model=gs.VerificationOut,
        status_code=201,
        responses={200: {"model": gs.VerificationOut, "description": "a repeat of the same run"}},
    )
    def report_verification(
        attempt_id: RowId, body: gs.VerificationIn, actor: Grader
    ) -> JSONResponse:
        """Append a verifier's result (201); the same run again answers the first (200), a
        different result under the same (verifier, run_id) is refused (409)."""
        report = body.to_report(attempt_id, actor, datetime.now(UTC))
        check_verification(report)
        result, created = store.record_verification(report)
        if not created and not result.report.same_report(report):
            raise VerificationConflict(attempt_id, report.verifier, report.run_id)
        out = gs.VerificationOut.of(result).model_dump(mode="json")
        return JSONResponse(out, status_code=201 if created else 200)

    @router.get("/attempts/{attempt_id}/verifications", response_model=gs.AttemptVerifications)
    def attempt_verifications(attempt_id: RowId) -> gs.AttemptVerifications:
        """The current result per verifier and the whole history, in ledger order."""
        store.get_attempt_session_id(attempt_id)
        return gs.AttemptVerifications.of(store.verifications([attempt_id]))

    @router.post("/sessions/{session_id}/deadline-changes", response_model=schemas.SessionOut)
    def change_deadline(
        session_id: RowId, body: gs.DeadlineChangeIn, actor: Admin
    ) -> schemas.SessionOut:
        """Extend (or move) due_at/closes_at: appended and audited; the original stays."""
        changed = store.apply_deadline_change(
            session_id, body.changes(), body.reason, actor, datetime.now(UTC), check_session_spec
        )
        return schemas.SessionOut.picked_up(changed)

    @router.get("/sessions/{session_id}/summary", response_model=gs.SessionSummaryOut)
    def session_summary(session_id: RowId) -> gs.SessionSummaryOut:
        """The attempt that counts, its current status, the newest attempt and lateness."""
        return grading.session_summary(store, session_id, skew)

    @router.get(
        "/labs/{lab_id}/summary",
        response_model=gs.LabSummaryOut,
        responses={200: {"content": {"text/csv": {}}}},
    )
    def lab_summary(
        lab_id: schemas.PlainText,
        request: Request,
        format: Annotated[str | None, Query(pattern="^(json|csv)$")] = None,
        after: Annotated[
            int, Query(ge=0, le=2**63 - 1, description="next_after of the previous page"), Digits
        ] = 0,
        limit: Annotated[
            int | None,
            Query(ge=1, le=grading.PAGE_SESSIONS, description="sessions per page; all if absent"),
            Digits,
        ] = None,
    ) -> Response:
        """Every session of a lab, or a page of them with `limit` (then `next_after` reads on);
        `?format=csv` or `Accept: text/csv` for a spreadsheet."""
        if limit is None and after == 0:
            summary = grading.lab_summary(store, lab_id, skew)
        else:
            summary = grading.lab_page(store, lab_id, skew, after, limit or grading.PAGE_SESSIONS)
        wants_csv = format == "csv" or (
            format is None and "text/csv" in request.headers.get("accept", "")
        )
        if wants_csv:
            return Response(grading.lab_csv(summary), media_type="text/csv; charset=utf-8")
        return JSONResponse(summary.model_dump(mode="json"))

    @router.get("/feed", response_model=gs.FeedPage)
    async def feed(
        after: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
        limit: Limit = 100,
        wait: Annotated[
            float, Query(ge=0, description="long-poll up to this many seconds"), DecimalDigits
        ] = 0,
    ) -> gs.FeedPage:
        """Attempts, pushes and verification results in Merkle-log order, once integrated.

        A consumer that stores `next_cursor` sees every entry exactly once across restarts.
        """
        position = _position(after)
        deadline = time.monotonic() + min(wait, MAX_WAIT_SECONDS)
        found = await read(store.log_entries_after, position, FEED_KINDS, limit)
        if not found and wait > 0:
            seen = await notifier.head()
            while not found and time.monotonic() < deadline:
                head = await notifier.wait_past(seen, deadline)
                if head > seen:
                    seen = head
                    found = await read(store.log_entries_after, position, FEED_KINDS, limit)
        items = await read(feed_items, store, found, skew)
        next_cursor = found[-1][0] + 1 if found else position
        return gs.FeedPage(items=items, next_cursor=str(next_cursor))

    return router


def _position(value: str | None) -> int:
    if value is None or value == "":
        return 0
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise MalformedPayload(f"invalid cursor {value[:40]!r}")
    return int(value)


def feed_items(
    store: SqlStore, found: list[tuple[int, str, int]], skew: timedelta = CLOCK_SKEW
) -> list[gs.FeedItem]:
    ids: dict[str, list[int]] = {k: [] for k in FEED_KINDS}
    for _, kind, entry_id in found:
        ids[kind].append(entry_id)
    attempts = store.attempts_by_id(ids["attempt"])
    sessions = {i: store.get_session(i) for i in {a.session_id for a in attempts.values()}}
    results = store.verifications_by_id(ids["verification"])
    items = []
    for position, kind, entry_id in found:
        # An entry purged by retention keeps its position but is left out (its archive holds it).
        item = gs.FeedItem(position=position, type=kind, id=entry_id)  # type: ignore[arg-type]
        if kind == "attempt":
            if entry_id not in attempts:
                continue
            a = attempts[entry_id]
            item.attempt = schemas.AttemptOut.of(a, sessions[a.session_id], skew)
        elif kind == "push":
            try:
                item.push = schemas.PushOut.of(store.push_record(entry_id), skew)
            except NotFound:
                continue
        else:
            if entry_id not in results:
                continue
            item.verification = gs.VerificationOut.of(results[entry_id])
        items.append(item)
    return items
