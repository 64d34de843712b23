"""The web view's routes: sign-in, labs, a lab's sessions, a session's timeline, an attempt,
receipts, student links and the static receipt verifier. Each page reads through the same
store and summaries as the JSON API, and answers HTML with a strict Content-Security-Policy."""

import hmac
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from labledger.compose import Ledger, SqlLog, SqlStore
from labledger.config import Settings
from labledger.core.errors import NotFound, NotYetLogged
from labledger.core.model import recorded_from
from labledger.core.note import VerifierKey
from labledger.http.grading_schemas import SessionSummaryOut, TimeCheckOut
from labledger.http.ui.access import CSRF_COOKIE, SESSION_COOKIE, SESSION_SECONDS, UiKeys, Viewer
from labledger.http.ui.links import link_router
from labledger.http.ui.timeline import lay_out
from labledger.services import grading

HERE = Path(__file__).parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
PAGE_ATTEMPTS = 500


def mount_ui(
    app: FastAPI,
    settings: Settings,
    store: SqlStore,
    log: SqlLog,
    key: VerifierKey,
    require: Callable[[str], Callable[..., Awaitable[str]]],
) -> None:
    """Add the web view to `app`: its pages, the student-link route, assets under /ui/static."""
    keys = UiKeys(settings)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    app.include_router(_router(keys, store, log, key))
    app.include_router(link_router(keys, store, require))


def _router(keys: UiKeys, store: SqlStore, log: SqlLog, key: VerifierKey) -> APIRouter:
    marks = Ledger(store).reconcile_marks
    router = APIRouter(include_in_schema=False)
    # Every template escapes, the included SVG too (select_autoescape would skip .svg).
    environment = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    environment.globals["marks_of"] = marks_of
    templates = Jinja2Templates(env=environment)

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        context.setdefault("viewer", None)
        context.setdefault("student", None)
        response = templates.TemplateResponse(request, name, context, status_code=status)
        response.headers.update(HEADERS)
        return response

    def signed_in(request: Request) -> Viewer | None:
        return keys.viewer(request.cookies.get(SESSION_COOKIE))

    def to_sign_in() -> Response:
        return RedirectResponse("/ui/sign-in", status_code=303, headers=HEADERS)

    @router.get("/ui/sign-in")
    def sign_in_form(request: Request) -> Response:
        if not keys.enabled:
            return page(request, "disabled.html", status=503)
        csrf = keys.anonymous_csrf()
        response = page(request, "sign_in.html", csrf=csrf, problem=None)
        _cookie(response, request, CSRF_COOKIE, csrf, 3600)
        return response

    @router.post("/ui/sign-in")
    def sign_in(
        request: Request, token: Annotated[str, Form()] = "", csrf: Annotated[str, Form()] = ""
    ) -> Response:
        if not keys.enabled:
            return page(request, "disabled.html", status=503)
        if not keys.anonymous_csrf_matches(request.cookies.get(CSRF_COOKIE), csrf):
            return page(request, "error.html", 403, problem="The form expired; open it again.")
        cookie = keys.open_session(token.strip())
        if cookie is None:
            fresh = keys.anonymous_csrf()
            refused = page(
                request, "sign_in.html", 401, csrf=fresh, problem="That token is not known here."
            )
            _cookie(refused, request, CSRF_COOKIE, fresh, 3600)
            return refused
        opened = RedirectResponse("/ui/", status_code=303, headers=HEADERS)
        _cookie(opened, request, SESSION_COOKIE, cookie, SESSION_SECONDS)
        opened.delete_cookie(CSRF_COOKIE, path="/ui")
        return opened

    @router.post("/ui/sign-out")
    def sign_out(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
        viewer = signed_in(request)
        if viewer is not None and not _same(viewer.csrf, csrf):
            return page(request, "error.html", 403, viewer=viewer, problem="The form expired.")
        response = RedirectResponse("/ui/sign-in", status_code=303, headers=HEADERS)
        response.delete_cookie(SESSION_COOKIE, path="/ui")
        return response

    @router.get("/ui/")
    def labs(request: Request) -> Response:
        viewer = signed_in(request)
        if viewer is None:
            return to_sign_in()
        found = [grading.lab_summary(store, lab) for lab in store.list_lab_ids()]
        return page(request, "labs.html", viewer=viewer, labs=found)

    @router.get("/ui/labs/{lab_id}")
    def lab(request: Request, lab_id: str, after: str = "") -> Response:
        viewer = signed_in(request)
        if viewer is None:
            return to_sign_in()
        start = _after(after)
        summary = grading.lab_page(store, lab_id, after=start)
        if not summary.sessions:
            return page(request, "error.html", 404, viewer=viewer, problem=f"No lab {lab_id!r}.")
        return page(request, "lab.html", viewer=viewer, lab=summary, after=start)

    @router.get("/ui/labs/{lab_id}/summary.csv")
    def lab_download(request: Request, lab_id: str) -> Response:
        if signed_in(request) is None:
            return to_sign_in()
        disposition = f'attachment; filename="{_file_safe(lab_id)}.csv"'
        return Response(
            grading.lab_csv(grading.lab_summary(store, lab_id)),
            media_type="text/csv; charset=utf-8",
            headers={**HEADERS, "Content-Disposition": disposition},
        )

    def session_page(request: Request, session_id: int, **context: Any) -> Response:
        try:
            session = store.get_session(session_id)
        except NotFound:
            return page(request, "error.html", 404, problem="No such session.", **context)
        attempts = store.all_session_attempts(session_id)
        pushes = {p: store.push_record(p) for p in {a.push_id for a in attempts}}
        return page(
            request,
            "session.html",
            session=session,
            summary=grading.session_summary(store, session.id),
            timeline=lay_out(session, attempts, pushes),
            attempts=attempts[:PAGE_ATTEMPTS],
            more=max(0, len(attempts) - PAGE_ATTEMPTS),
            pushes=pushes,
            **context,
        )

    @router.get("/ui/sessions/{session_id}")
    def session_view(request: Request, session_id: int) -> Response:
        viewer = signed_in(request)
        if viewer is None:
            return to_sign_in()
        return session_page(request, session_id, viewer=viewer, base="/ui")

    @router.get("/ui/attempts/{attempt_id}")
    def attempt_view(request: Request, attempt_id: int) -> Response:
        viewer = signed_in(request)
        if viewer is None:
            return to_sign_in()
        try:
            record = store.get_attempt(attempt_id)
        except NotFound:
            return page(request, "error.html", 404, viewer=viewer, problem="No such attempt.")
        session = store.get_session(record.attempt.session_id)
        results = store.verifications([attempt_id])
        checked = marks.time_check(record.attempt.push_id)
        return page(
            request,
            "attempt.html",
            viewer=viewer,
            record=record,
            session=session,
            results=results,
            source=recorded_from(session.spec.forge, record.attempt.delivery_id),
            time_check=TimeCheckOut.model_validate(checked) if checked else None,
        )

    @router.get("/ui/attempts/{attempt_id}/receipt")
    def attempt_receipt(request: Request, attempt_id: int) -> Response:
        if signed_in(request) is None:
            return to_sign_in()
        return receipt_download(request, attempt_id)

    def receipt_download(request: Request, attempt_id: int) -> Response:
        try:
            store.get_attempt(attempt_id)
            receipt = log.receipt("attempt", attempt_id).to_json()
        except NotFound:
            return page(request, "error.html", 404, problem="No such attempt.")
        except NotYetLogged:
            problem = "This attempt is not yet covered by a signed checkpoint; try in a minute."
            return page(request, "error.html", 409, problem=problem)
        return Response(
            json.dumps(receipt, indent=2, sort_keys=True) + "\n",
            media_type="application/json",
            headers={
                **HEADERS,
                "Content-Disposition": f'attachment; filename="attempt-{attempt_id}-receipt.json"',
            },
        )

    @router.get("/ui/s/{token}")
    def student_session(request: Request, token: str) -> Response:
        session_id = keys.open_link(token)
        if session_id is None:
            return page(request, "error.html", 403, problem=_LINK_REFUSED)
        return session_page(request, session_id, student=token, base=f"/ui/s/{token}")

    @router.get("/ui/s/{token}/attempts/{attempt_id}/receipt")
    def student_receipt(request: Request, token: str, attempt_id: int) -> Response:
        session_id = keys.open_link(token)
        if session_id is None:
            return page(request, "error.html", 403, problem=_LINK_REFUSED)
        try:
            if store.get_attempt_session_id(attempt_id) != session_id:
                raise NotFound("attempt", attempt_id)
        except NotFound:
            return page(request, "error.html", 404, problem="No such attempt in this session.")
        return receipt_download(request, attempt_id)

    @router.get("/verify")
    def verify_page(request: Request) -> Response:
        # Relative asset paths: the page keeps working when saved to disk with its assets.
        return page(request, "verify.html", served_key=key.encode(), static="ui/static/")

    return router


_LINK_REFUSED = (
    "This link is not valid: it has expired, was changed, or the ledger's link key was rotated. "
    "Ask your instructor for a new one."
)


def _cookie(response: Response, request: Request, name: str, value: str, seconds: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=seconds,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _same(a: str, b: str) -> bool:
    return bool(a) and hmac.compare_digest(a.encode(), b.encode())


def marks_of(s: SessionSummaryOut) -> str:
    """The overview's marks of a session, space-separated (the marks filter reads them)."""
    marks = {
        "late": s.late_attempts,
        "force": s.force_pushes,
        "gap": s.gaps,
        "unconfirmed": s.unconfirmed_times or s.counts_by_unconfirmed_time,
        "api": s.api_recorded_attempts,
        "unverified": s.counting_status is None,
    }
    return " ".join(name for name, present in marks.items() if present)


def _after(text: str) -> int:
    """A page's `after`: ASCII digits, anything else reads from the first session."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else 0


def _file_safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)[:80] or "lab"
