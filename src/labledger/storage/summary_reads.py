"""Summaries of a page of sessions in a fixed number of statements, whatever the number of
sessions in the page or of attempts in them.

One statement each: the sessions, per-session counts (attempts, late, unconfirmed times), the
two attempts each summary shows (ranked by a window function, so only they cross into
Python), the results of the attempts that count, the open push-chain gaps of the page's
repositories, and the pushes that rewrote history. A page is the sessions of one lab (or the
one session asked for) with ids after `after`, at most `limit` of them; every statement after
the first reads that same range.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Connection,
    and_,
    case,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.sql import Subquery

from labledger.core.grading import AttemptTally, tally
from labledger.core.model import (
    CLOCK_SKEW,
    LabAttempt,
    LabSession,
    VerificationResult,
    branch_of,
)
from labledger.storage.gaps import gaps_query
from labledger.storage.rows import (
    attempt_from_row,
    attempt_query,
    session_from_row,
    session_query,
    verification_from_row,
)
from labledger.storage.tables import (
    UtcDateTime,
    attempts,
    lab_sessions,
    pushes,
    verification_results,
)

# invariant 5: lateness is judged by pushed_at, falling back to received_at.
TRUSTED_TIME: ColumnElement[datetime] = func.coalesce(
    attempts.c.pushed_at, attempts.c.received_at, type_=UtcDateTime
)
API_RECORDED = "github-api"


def _recorded_from() -> tuple[Column[Any] | None, Column[Any] | None]:
    """Where the ledger says an attempt was recorded from (`recorded_from`), if it does: on
    the attempt itself, else on its push. Without such a column no attempt is API-recorded."""
    own = attempts.c.get("recorded_from")
    return own, None if own is not None else pushes.c.get("recorded_from")


@dataclass(frozen=True, slots=True)
class SessionTally:
    """What a session's summary shows, read with the rest of its page."""

    session: LabSession
    counted: AttemptTally
    results: tuple[VerificationResult, ...]  # every result of the counting attempt
    gaps: int  # open gaps on the session's repository in branches it follows
    force_pushes: int  # pushes that rewrote history and recorded one of its attempts
    unconfirmed_times: int  # attempts whose pushed_at the forge has not confirmed
    api_recorded: int  # attempts recorded from the forge's API, not a webhook


def session_tallies(
    conn: Connection,
    *,
    lab_id: str | None = None,
    session_id: int | None = None,
    after: int = 0,
    limit: int | None = None,
    skew: timedelta = CLOCK_SKEW,
) -> list[SessionTally]:
    """The sessions of `lab_id` (or the one `session_id`) after `after`, in id order."""
    chosen = session_query().where(lab_sessions.c.id > after)
    if lab_id is not None:
        chosen = chosen.where(lab_sessions.c.lab_id == lab_id)
    if session_id is not None:
        chosen = chosen.where(lab_sessions.c.id == session_id)
    chosen = chosen.order_by(lab_sessions.c.id)
    sessions = [session_from_row(r) for r in conn.execute(chosen.limit(limit))]
    if not sessions:
        return []
    page = chosen.where(lab_sessions.c.id <= sessions[-1].id).order_by(None).subquery("page")
    counts = _counts(conn, page, skew)
    shown = _shown(conn, page)
    picked = {s.id: tally(s, shown.get(s.id, [])) for s in sessions}
    results = _results(conn, [p.counting.id for p in picked.values() if p.counting])
    gaps = _gaps(conn, page)
    pushed = _push_marks(conn, page)
    found = []
    for s in sessions:
        total, late, unconfirmed, api = counts.get(s.id, (0, 0, 0, 0))
        counting, newest = picked[s.id].counting, picked[s.id].newest
        force_pushes, api_pushed = pushed.get(s.id, (0, 0))
        found.append(
            SessionTally(
                session=s,
                counted=AttemptTally(total, late, counting, newest),
                results=tuple(results.get(counting.id, ())) if counting else (),
                gaps=sum(
                    1
                    for forge, repository_id, branch in gaps
                    if (forge, repository_id) == (s.spec.forge, s.spec.repository_id)
                    and branch is not None
                    and s.matches_branch(branch)
                ),
                force_pushes=force_pushes,
                unconfirmed_times=unconfirmed,
                api_recorded=api + api_pushed,
            )
        )
    return found


def _effective_due(page: Subquery) -> ColumnElement[datetime]:
    """The newest deadline change's due_at (null included), else the session's own."""
    return case((page.c.change_id.is_not(None), page.c.changed_due_at), else_=page.c.due_at)


def _counts(
    conn: Connection, page: Subquery, skew: timedelta
) -> dict[int, tuple[int, int, int, int]]:
    due = _effective_due(page)
    own, _ = _recorded_from()
    api: ColumnElement[Any] = (
        func.sum(case((own == API_RECORDED, 1), else_=0)) if own is not None else func.sum(0)
    )
    query = (
        select(
            attempts.c.session_id,
            func.count(),
            func.sum(case((due < TRUSTED_TIME, 1), else_=0)),
            func.sum(case((_unconfirmed(conn, skew), 1), else_=0)),
            api,
        )
        .join(page, page.c.id == attempts.c.session_id)
        .group_by(attempts.c.session_id)
    )
    return {
        r[0]: (int(r[1]), int(r[2] or 0), int(r[3] or 0), int(r[4] or 0))
        for r in conn.execute(query)
    }


def _unconfirmed(conn: Connection, skew: timedelta) -> ColumnElement[bool]:
    """core.model.is_time_unconfirmed in SQL: received_at - pushed_at > skew."""
    received, pushed = attempts.c.received_at, attempts.c.pushed_at
    if conn.dialect.name == "postgresql":
        return received - pushed > literal(skew)
    # SQLite keeps times as text; julianday() reads them as days (to the millisecond).
    seconds = (func.julianday(received) - func.julianday(pushed)) * 86400.0
    return seconds > skew.total_seconds()


def _shown(conn: Connection, page: Subquery) -> dict[int, list[LabAttempt]]:
    """Per session, its newest attempt and its newest at or before the effective due date
    (core.grading.tally states the rule; ties by ledger order): at most two rows each."""
    due = _effective_due(page)
    on_time = or_(due.is_(None), due >= TRUSTED_TIME)
    newest_first = (TRUSTED_TIME.desc(), attempts.c.id.desc())
    ranked = (
        select(
            attempts.c.id,
            func.row_number()
            .over(partition_by=attempts.c.session_id, order_by=newest_first)
            .label("newest"),
            func.row_number()
            .over(
                partition_by=attempts.c.session_id,
                order_by=(case((on_time, 0), else_=1), *newest_first),
            )
            .label("counting"),
            case((on_time, 1), else_=0).label("on_time"),
        )
        .join(page, page.c.id == attempts.c.session_id)
        .subquery("ranked")
    )
    picked = select(ranked.c.id).where(
        or_(ranked.c.newest == 1, and_(ranked.c.counting == 1, ranked.c.on_time == 1))
    )
    shown: dict[int, list[LabAttempt]] = {}
    for row in conn.execute(attempt_query().where(attempts.c.id.in_(picked))):
        attempt = attempt_from_row(row)
        shown.setdefault(attempt.session_id, []).append(attempt)
    return shown


def _results(conn: Connection, attempt_ids: list[int]) -> dict[int, list[VerificationResult]]:
    if not attempt_ids:
        return {}
    rows = conn.execute(
        select(verification_results)
        .where(verification_results.c.attempt_id.in_(attempt_ids))
        .order_by(verification_results.c.id)
    )
    found: dict[int, list[VerificationResult]] = {}
    for row in rows:
        result = verification_from_row(row)
        found.setdefault(result.report.attempt_id, []).append(result)
    return found


def _gaps(conn: Connection, page: Subquery) -> list[tuple[str, int, str | None]]:
    """(forge, repository id, branch) of every open gap on the page's repositories."""
    open_gaps = gaps_query().subquery("open_gaps")
    rows = conn.execute(
        select(open_gaps.c.forge, open_gaps.c.repository_id, open_gaps.c.ref).where(
            open_gaps.c.repository_id.in_(select(page.c.repository_id))
        )
    )
    return [(r.forge, r.repository_id, branch_of(r.ref)) for r in rows]


def _push_marks(conn: Connection, page: Subquery) -> dict[int, tuple[int, int]]:
    """Per session, the pushes that rewrote history (core.model.Push.rewrites_history) and
    the attempts recorded by an API-recorded push, when pushes say where they came from."""
    rewrote = and_(pushes.c.forced, ~pushes.c.created, ~pushes.c.deleted)
    _, on_push = _recorded_from()
    from_api = on_push == API_RECORDED if on_push is not None else literal(False)
    query = (
        select(
            attempts.c.session_id,
            func.count(func.distinct(case((rewrote, pushes.c.id)))),
            func.sum(case((from_api, 1), else_=0)),
        )
        .join(pushes, pushes.c.id == attempts.c.push_id)
        .join(page, page.c.id == attempts.c.session_id)
        .where(or_(rewrote, from_api))
        .group_by(attempts.c.session_id)
    )
    return {r[0]: (int(r[1]), int(r[2] or 0)) for r in conn.execute(query)}
