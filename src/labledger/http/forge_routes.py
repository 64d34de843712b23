"""`POST /webhooks/gitlab` and `POST /webhooks/gitea` (Gitea and Forgejo): the GitHub route's
shape, with each forge's receiver. The route reads the body and maps the answer; nothing else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from labledger.compose import SqlStore
from labledger.config import Settings
from labledger.core.errors import LedgerError, SignatureRejected
from labledger.http import schemas
from labledger.http.metrics import Metrics
from labledger.services.ingest import WebhookAnswer, receive_gitea, receive_gitlab

log = structlog.get_logger("labledger.http")
ReadBody = Callable[[Request, int, float], Awaitable[bytes]]
StatusOf = Callable[[LedgerError], tuple[int, str]]
Receive = Callable[..., WebhookAnswer]


def _responses(auth: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {"model": schemas.WebhookResult, "description": "duplicate or ignored event"},
        **schemas.error_responses(
            (400, "malformed payload or headers"),
            (401, f"missing or wrong {auth}, or a credential scoped to another repository"),
            (408, "body not received within LABLEDGER_BODY_TIMEOUT_SECONDS"),
            (409, "delivery id reused with another body"),
            (413, "body over LABLEDGER_MAX_BODY_BYTES"),
            (415, "content type is not application/json"),
            (503, "database unavailable; redeliver later"),
        ),
    }


def forge_webhook_router(
    settings: Settings, store: SqlStore, metrics: Metrics, read_body: ReadBody, status_of: StatusOf
) -> APIRouter:
    """The app's own body reader and exception-to-status map come in, so there is one of each."""
    router = APIRouter(tags=["webhooks"])
    receivers: dict[str, tuple[Receive, str]] = {
        "gitlab": (
            partial(receive_gitlab, store, settings.gitlab_credentials()),
            "X-Gitlab-Token / webhook-signature",
        ),
        "gitea": (
            partial(receive_gitea, store, settings.gitea_secrets()),
            "X-Gitea-Signature / X-Forgejo-Signature",
        ),
    }
    for forge, (receive, auth) in receivers.items():
        router.add_api_route(
            f"/webhooks/{forge}",
            _endpoint(forge, receive, settings, metrics, (read_body, status_of)),
            methods=["POST"],
            response_model=schemas.WebhookResult,
            status_code=202,
            responses=_responses(auth),
            summary=f"Record a {forge} push (202); acknowledge duplicates and other events (200)",
        )
    return router


def _endpoint(
    forge: str,
    receive: Receive,
    settings: Settings,
    metrics: Metrics,
    edge: tuple[ReadBody, StatusOf],
) -> Callable[[Request], Awaitable[JSONResponse]]:
    read_body, status_of = edge

    async def webhook(request: Request) -> JSONResponse:
        received_at = datetime.now(UTC)
        try:
            body = await read_body(request, settings.max_body_bytes, settings.body_timeout_seconds)
            headers = {k.lower(): v for k, v in request.headers.items()}
            answer = await run_in_threadpool(
                receive, headers, body, received_at, settings.max_body_bytes
            )
        except LedgerError as exc:
            _count_refusal(metrics, forge, status_of(exc), exc)
            raise
        metrics.deliveries.labels(forge, answer.outcome).inc()
        attempts = answer.body.get("attempt_ids", [])
        if answer.outcome == "recorded":
            metrics.attempts.inc(len(attempts))  # type: ignore[arg-type]
        log.info("webhook.answered", forge=forge, outcome=answer.outcome, status=answer.status)
        return JSONResponse(answer.body, status_code=answer.status)

    webhook.__name__ = f"{forge}_webhook"
    return webhook


def _count_refusal(metrics: Metrics, forge: str, answer: tuple[int, str], exc: LedgerError) -> None:
    status, code = answer
    metrics.deliveries.labels(forge, code).inc()
    if isinstance(exc, SignatureRejected):
        metrics.signature_failures.labels(forge).inc()
    level = log.error if status >= 500 else log.warning
    level("webhook.refused", forge=forge, status=status, reason=code, detail=str(exc)[:300])
