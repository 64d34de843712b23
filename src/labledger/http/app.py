"""The HTTP edge: read the request, call the core, map the result. Nothing else."""

import asyncio
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Protocol

import structlog
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from labledger import __version__
from labledger.compose import Ledger, SqlStore
from labledger.config import SCOPES, Settings
from labledger.core.errors import (
    BodyTimeout,
    BodyTooLarge,
    DeliveryConflict,
    Forbidden,
    InvalidRequest,
    LedgerError,
    MalformedPayload,
    NotFound,
    NotJson,
    NotYetLogged,
    RepositoryShared,
    SignatureRejected,
    StoreUnavailable,
    Unauthorized,
    VerificationConflict,
)
from labledger.core.note import SignerKey
from labledger.core.service import check_session_spec
from labledger.forges.scoped import FORGE_PATTERN
from labledger.http import grading_schemas, schemas
from labledger.http.forge_routes import forge_webhook_router
from labledger.http.gaps_routes import gaps_router
from labledger.http.grading_routes import grading_router
from labledger.http.integrator import integrator_lifespan
from labledger.http.limits import BodyLimits, Lanes
from labledger.http.log_routes import log_router, public_key_router
from labledger.http.metrics import LatencyMiddleware, Metrics
from labledger.http.params import Limit, RowId, json_response
from labledger.http.ui.pages import mount_ui
from labledger.services.ingest import receive_github
from labledger.services.notify import Dispatcher

log = structlog.get_logger("labledger.http")

# The one exception-to-status map of the HTTP edge.
STATUS = {
    MalformedPayload: (400, "malformed"),
    SignatureRejected: (401, "signature"),
    Unauthorized: (401, "unauthorized"),
    Forbidden: (403, "forbidden"),
    NotFound: (404, "not_found"),
    DeliveryConflict: (409, "conflict"),
    VerificationConflict: (409, "conflict"),
    RepositoryShared: (409, "conflict"),
    BodyTimeout: (408, "timeout"),
    BodyTooLarge: (413, "too_large"),
    NotJson: (415, "not_json"),
    InvalidRequest: (422, "invalid"),
    StoreUnavailable: (503, "unavailable"),
    NotYetLogged: (409, "not_yet_logged"),
}
RETRY_AFTER_SECONDS = "5"


error_responses = schemas.error_responses
ERRORS = schemas.API_ERRORS


def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Parameter and body validation answer in the same ErrorOut shape as every other error."""
    errors = exc.errors()
    problems = [
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
        for e in errors[:3]
    ]
    # Control characters are malformed input (400), as the core's own text check says.
    malformed = any(e.get("type") == schemas.CONTROL_CHARACTER for e in errors)
    status, code = (400, "malformed") if malformed else (422, "invalid")
    return JSONResponse({"error": code, "detail": "; ".join(problems)}, status_code=status)


def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Framework errors (unknown path, unparseable body, ...) also answer as ErrorOut."""
    return JSONResponse(
        {"error": "http", "detail": str(exc.detail)},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


def status_of(exc: LedgerError) -> tuple[int, str]:
    return next((v for k, v in STATUS.items() if isinstance(exc, k)), (500, "internal"))


def create_app(
    settings: Settings,
    store: SqlStore,
    signer: SignerKey | None = None,
    *,
    integrate_in_background: bool = False,
) -> FastAPI:
    """The whole HTTP service. `serve` integrates the Merkle log in the background; tests
    integrate explicitly so that what they check does not depend on timing."""
    metrics = Metrics()
    signer = signer or settings.signer()
    ledger = Ledger(store)
    log = ledger.log
    dispatcher = Dispatcher.from_settings(settings, ledger.outbox) if settings.subscribers else None
    lifespan = (
        integrator_lifespan(log, signer, settings, dispatcher, lambda: store.entries_queued)
        if integrate_in_background
        else None
    )
    app = FastAPI(
        title="labledger",
        version=__version__,
        description="The Lab Attempt Ledger: every pushed commit recorded once, append-only.",
        lifespan=lifespan,
    )
    metrics.watch_log(log.backlog)
    metrics.watch_gaps(store.count_push_chain_gaps)
    metrics.watch_commits(store.commit_sizes)
    app.add_middleware(Lanes, api=settings.api_concurrency, webhooks=settings.webhook_concurrency)
    app.add_middleware(
        BodyLimits,
        api_bytes=settings.max_api_body_bytes,
        webhook_bytes=settings.max_body_bytes,
        webhook_bytes_in_flight=settings.webhook_bytes_in_flight,
    )
    app.add_middleware(LatencyMiddleware, metrics=metrics)
    app.add_exception_handler(LedgerError, _ledger_error)  # type: ignore[arg-type]
    app.add_exception_handler(NotFound, _archived_or_not_found(ledger))  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(SQLAlchemyError, _database_error)  # type: ignore[arg-type]
    require = _token_checker(settings)
    app.include_router(_webhook_router(settings, store, metrics))
    app.include_router(forge_webhook_router(settings, store, metrics, _read_body, status_of))
    app.include_router(_ops_router(store, metrics))
    app.include_router(public_key_router(signer.verifier, log))
    app.include_router(_api_router(ledger, require, settings.clock_skew))
    app.include_router(
        grading_router(store, require, settings.clock_skew, settings.feed_max_waiters)
    )
    app.include_router(log_router(store, log, signer.verifier, require("read")))
    app.include_router(gaps_router(store, require("read")))
    mount_ui(app, settings, store, log, signer.verifier, require)
    return app


def _ledger_error(request: Request, exc: LedgerError) -> JSONResponse:
    status, code = status_of(exc)
    retry = isinstance(exc, StoreUnavailable | NotYetLogged)
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if retry else None
    if status == 401 and request.url.path.startswith("/api/"):
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse({"error": code, "detail": str(exc)}, status_code=status, headers=headers)


def _database_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
    """A database error no core outcome explains: a 500 whose log names its class and SQLSTATE
    only. The driver's message can quote the row (PostgreSQL's `Failing row contains (...)`),
    that is request data, so neither the log nor the answer repeats it."""
    orig = getattr(exc, "orig", None)
    log.error(
        "database.error",
        error=type(orig or exc).__name__,
        sqlstate=getattr(orig, "sqlstate", None),
        method=request.method,
        route=getattr(request.scope.get("route"), "path", None),
    )
    detail = "database error; the server log names its class"
    return JSONResponse({"error": "internal", "detail": detail}, status_code=500)


def _archived_or_not_found(ledger: Ledger) -> Callable[[Request, NotFound], JSONResponse]:
    """A purged attempt answers 410 `archived` with its archive's id, not a bare 404."""

    def answer(request: Request, exc: NotFound) -> JSONResponse:
        if exc.kind == "attempt" and isinstance(exc.key, int):
            archive_id = ledger.purged_archive("attempt", exc.key)
            if archive_id is not None:
                detail = (
                    f"attempt {exc.key} was purged by the retention policy; "
                    f"archive {archive_id} holds it"
                )
                body = {"error": "archived", "detail": detail, "archive_id": archive_id}
                return JSONResponse(body, status_code=410)
        return _ledger_error(request, exc)

    return answer


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """Read at most `limit` bytes; refuse more without holding them, and give up on slow senders."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise BodyTimeout(timeout) from None
    return b"".join(chunks)


def _webhook_router(settings: Settings, store: SqlStore, metrics: Metrics) -> APIRouter:
    router = APIRouter(tags=["webhooks"])
    secret = settings.github_secrets()

    @router.post(
        "/webhooks/github",
        response_model=schemas.WebhookResult,
        status_code=202,
        responses={
            200: {
                "model": schemas.WebhookResult,
                "description": "duplicate, ping or ignored event",
            },
            **error_responses(
                (400, "malformed payload or headers"),
                (401, "missing or wrong X-Hub-Signature-256"),
                (408, "body not received within LABLEDGER_BODY_TIMEOUT_SECONDS"),
                (409, "delivery id reused with another body by the same hook"),
                (413, "body over LABLEDGER_MAX_BODY_BYTES"),
                (415, "content type is not application/json"),
                (503, "database unavailable; redeliver later"),
            ),
        },
    )
    async def github_webhook(request: Request) -> JSONResponse:
        """Record a GitHub push (202), acknowledge ping/duplicates/other events (200)."""
        received_at = datetime.now(UTC)
        delivery_id = request.headers.get("x-github-delivery", "")
        with structlog.contextvars.bound_contextvars(delivery_id=delivery_id[:100]):
            try:
                body = await _read_body(
                    request, settings.max_body_bytes, settings.body_timeout_seconds
                )
                headers = {k.lower(): v for k, v in request.headers.items()}
                answer = await run_in_threadpool(
                    receive_github,
                    store,
                    secret,
                    headers,
                    body,
                    received_at,
                    settings.max_body_bytes,
                )
            except LedgerError as exc:
                _count_refusal(metrics, exc)
                raise
            metrics.deliveries.labels("github", answer.outcome).inc()
            if answer.outcome == "recorded":
                metrics.attempts.inc(len(answer.body.get("attempt_ids", [])))  # type: ignore[arg-type]
            log.info(
                "webhook.answered",
                outcome=answer.outcome,
                status=answer.status,
                attempts=len(answer.body.get("attempt_ids", [])),  # type: ignore[arg-type]
            )
            return JSONResponse(answer.body, status_code=answer.status)

    return router


def _count_refusal(metrics: Metrics, exc: LedgerError) -> None:
    status, code = status_of(exc)
    metrics.deliveries.labels("github", code).inc()
    if isinstance(exc, SignatureRejected):
        metrics.signature_failures.labels("github").inc()
    level = log.error if status >= 500 else log.warning
    level("webhook.refused", status=status, reason=code, detail=str(exc)[:300])


def _ops_router(store: SqlStore, metrics: Metrics) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get(
        "/healthz", response_model=schemas.Health, responses={503: {"model": schemas.Health}}
    )
    def healthz() -> JSONResponse:
        """Liveness and database reachability."""
        try:
            store.ping()
        except StoreUnavailable:
            return JSONResponse(
                {"status": "degraded", "database": "unreachable"},
                status_code=503,
                headers={"Retry-After": RETRY_AFTER_SECONDS},
            )
        return JSONResponse({"status": "ok", "database": "ok"})

    @router.get("/metrics", response_class=Response)
    def prometheus_metrics() -> Response:
        """Prometheus text format."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router


def _token_checker(settings: Settings) -> Callable[[str], Callable[..., Awaitable[str]]]:
    """`require(scope)` makes a dependency that answers 401 without a known token and 403
    when the token's scope is below `scope` (read < grader < admin); it returns the actor,
    `api-token:<name>`: the audit log, readable with any token, holds nothing derived from
    a token's secret."""
    scoped = [
        (t.level, t.name, hashlib.sha256(t.secret.get_secret_value().encode()).digest())
        for t in settings.api_tokens
    ]
    bearer = HTTPBearer(auto_error=False)

    def require(scope: str) -> Callable[..., Awaitable[str]]:
        needed = SCOPES.index(scope)

        # async: it does no I/O, and FastAPI runs a sync dependency on the thread pool, a
        # thread hop per API request that cost more than the rest of a one-row lookup.
        async def require_token(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
        ) -> str:
            if credentials is None:
                raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
            given = hashlib.sha256(credentials.credentials.encode()).digest()
            # Compare against every token, in constant time each, so timing tells nothing.
            known = [(level, name) for level, name, d in scoped if hmac.compare_digest(given, d)]
            if not known:
                raise Unauthorized("unknown bearer token")
            level, name = max(known)
            if level < needed:
                raise Forbidden(scope, SCOPES[level])
            return f"api-token:{name}"

        return require_token

    return require


Cursor = Annotated[str | None, Query(description="next_cursor from the previous page")]


def _cursor(value: str | None) -> int:
    if value is None or value == "":
        return 0
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise MalformedPayload(f"invalid cursor {value[:40]!r}")
    return int(value)


def _api_router(
    ledger: Ledger, require: Callable[[str], Callable[..., Awaitable[str]]], skew: timedelta
) -> APIRouter:
    store = ledger.store
    router = APIRouter(
        prefix="/api/v1", tags=["ledger"], dependencies=[Depends(require("read"))], responses=ERRORS
    )
    Admin = Annotated[str, Depends(require("admin"))]

    @router.post("/sessions", response_model=schemas.SessionOut, status_code=201)
    def create_session(body: schemas.SessionCreate, actor: Admin) -> schemas.SessionOut:
        """Open a lab session for one subject, lab and repository; a second session of the
        lab on the repository answers 409 unless `allow_shared_repository` is true."""
        spec = body.to_spec()
        check_session_spec(spec)
        shared = body.allow_shared_repository
        opened = store.open_sessions(
            [spec], actor, datetime.now(UTC), allow_shared_repository=shared
        )[0]
        return schemas.SessionOut.picked_up(opened)

    @router.get("/sessions", response_model=schemas.SessionPage)
    def list_sessions(
        lab_id: schemas.PlainText | None = None, cursor: Cursor = None, limit: Limit = 100
    ) -> schemas.SessionPage:
        """Sessions in creation order, optionally of one lab."""
        found = store.list_sessions(lab_id=lab_id, after=_cursor(cursor), limit=limit)
        items = [schemas.SessionOut.of(s) for s in found]
        return schemas.SessionPage(items=items, next_cursor=_next(found, limit))

    @router.get("/sessions/{session_id}", response_model=schemas.SessionOut)
    def get_session(session_id: RowId) -> schemas.SessionOut:
        return schemas.SessionOut.of(store.get_session(session_id))

    @router.get("/sessions/{session_id}/attempts", response_model=schemas.AttemptPage)
    def session_attempts(session_id: RowId, cursor: Cursor = None, limit: Limit = 100) -> Response:
        """A session's attempts in ledger order, each with `late` against the current due_at."""
        session, found = store.session_page(session_id, after=_cursor(cursor), limit=limit)
        items = [schemas.attempt_row_json(r, session, skew) for r in found]
        return json_response({"items": items, "next_cursor": _next(found, limit)})

    @router.get("/attempts", response_model=schemas.AttemptList)
    def attempts_by_commit(
        commit_sha: Annotated[str, Query(pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$")],
    ) -> Response:
        """Every attempt of one commit, in any session."""
        found, sessions = store.commit_attempts(commit_sha)
        items = [schemas.attempt_row_json(r, sessions[r.session_id], skew) for r in found]
        return json_response({"items": items})

    @router.get("/attempts/{attempt_id}", response_model=grading_schemas.AttemptDetailOut)
    def get_attempt(attempt_id: RowId) -> grading_schemas.AttemptDetailOut:
        """One attempt with the push and delivery that recorded it, and its verifications."""
        record = store.get_attempt(attempt_id)
        return grading_schemas.AttemptDetailOut.with_results(
            record,
            store.get_session(record.attempt.session_id),
            store.verifications([attempt_id]),
            skew,
            ledger.reconcile_marks.time_check(record.attempt.push_id),
        )

    @router.get("/deliveries/{delivery_id}", response_model=schemas.DeliveryDetail)
    def get_delivery(
        delivery_id: schemas.PlainText,
        forge: Annotated[str, Query(pattern=FORGE_PATTERN)] = "github",
    ) -> Response:
        """What one delivery produced: its push and the attempts it first recorded."""
        view = store.delivery_view(forge, delivery_id)
        return json_response(schemas.delivery_detail_json(view, skew))

    return router


class _Identified(Protocol):
    @property
    def id(self) -> int: ...


def _next(found: Sequence[_Identified], limit: int) -> str | None:
    return str(found[-1].id) if len(found) == limit else None
