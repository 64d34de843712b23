"""The HTTP-bound and naive-stack servers, as ASGI factories for uvicorn.

    uvicorn bench.baselines:create_http_bound_app --factory
    uvicorn bench.baselines:create_naive_app --factory

Both read LABLEDGER_GITHUB_WEBHOOK_SECRET (and the naive one BENCH_NAIVE_DATABASE_URL) when
uvicorn builds the app, never at import time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.routing import Route

from bench import naive_store
from labledger.storage.engine import WRITE_OPTION, make_engine

SECRET_ENV = "LABLEDGER_GITHUB_WEBHOOK_SECRET"
NAIVE_DATABASE_ENV = "BENCH_NAIVE_DATABASE_URL"


def signed(secret: bytes, body: bytes, header: str) -> bool:
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.encode())


def create_http_bound_app() -> Starlette:
    """Reads the body, checks the HMAC, parses the JSON, answers 202; stores nothing."""
    secret = os.environ[SECRET_ENV].encode()

    async def github_webhook(request: StarletteRequest) -> StarletteJSONResponse:
        body = await request.body()
        if not signed(secret, body, request.headers.get("x-hub-signature-256", "")):
            return StarletteJSONResponse({"error": "signature"}, status_code=401)
        payload = json.loads(body)
        delivery_id = request.headers.get("x-github-delivery", "")
        answer = {"outcome": "recorded", "delivery_id": delivery_id, "ref": payload["ref"]}
        return StarletteJSONResponse(answer, status_code=202)

    async def healthz(request: StarletteRequest) -> StarletteJSONResponse:
        return StarletteJSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/webhooks/github", github_webhook, methods=["POST"]),
            Route("/healthz", healthz),
        ]
    )


def create_naive_app() -> FastAPI:
    """FastAPI and the same database as labledger, with plain inserts and no guarantees."""
    secret = os.environ[SECRET_ENV].encode()
    engine = make_engine(os.environ[NAIVE_DATABASE_ENV])
    app = FastAPI(title="naive webhook stack")

    @app.post("/webhooks/github", status_code=202)
    async def github_webhook(request: Request) -> JSONResponse:
        body = await request.body()
        if not signed(secret, body, request.headers.get("x-hub-signature-256", "")):
            return JSONResponse({"error": "signature"}, status_code=401)
        delivery_id = request.headers.get("x-github-delivery", "")
        ids = await run_in_threadpool(_record, engine, delivery_id, body)
        return JSONResponse({"delivery_id": delivery_id, "attempt_ids": ids}, status_code=202)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _record(engine: Engine, delivery_id: str, body: bytes) -> list[int]:
    # The same write-lock-first transactions labledger's engine gives its own writers: without
    # them concurrent SQLite writers fail with "database is locked" instead of waiting.
    with engine.connect() as conn:
        conn = conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            return naive_store.record(conn, delivery_id, body, json.loads(body))
