"""Summaries of a page of sessions in a fixed number of statements, whatever the number of
sessions in the page or of attempts in them.

One statement each: the sessions; one pass over their attempts for the counts (attempts,
late, unconfirmed times) and the ids of the two attempts each summary shows; those attempts;
the results of the attempts that count; the open push-chain gaps of the page's repositories;
and the few pushes that rewrote history or were read from GitHub's API. Only these rows cross
into Python. A page is the sessions of one lab (or the one session asked for) with ids after
`after`, at most `limit` of them; every statement after the first reads that same range.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.sql import Select
from sqlalchemy.sql.selectable import CTE

from labledger.core.grading import AttemptTally
from labledger.core.model import (
    API_DELIVERY_PREFIX,
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
    deliveries,
    lab_sessions,
    pushes,
    verification_results,
)

# invariant 5: lateness is judged by pushed_at, falling back to received_at.
TRUSTED_TIME: ColumnElement[datetime] = func.coalesce(
    attempts.c.pushed_at, attempts.c.received_at, type_=UtcDateTime
)


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
    page = _page(chosen.where(lab_sessions.c.id <= sessions[-1].id))
    counts = _counts(conn, page, skew)
    chosen_ids = {i for c in counts.values() for i in (c.newest_id, c.counting_id) if i}
    shown = _shown(conn, sorted(chosen_ids))
    results = _results(conn, sorted({c.counting_id for c in counts.values() if c.counting_id}))
    gaps = _gaps(conn, page)
    pushed = _push_marks(conn, page, skew)
    found = []
    for s in sessions:
        c = counts.get(s.id, _NONE)
        marks = pushed.get(s.id, _NO_MARKS)
        counting = shown.get(c.counting_id) if c.counting_id else None
        newest = shown.get(c.newest_id) if c.newest_id else None
        found.append(
            SessionTally(
                session=s,
                counted=AttemptTally(c.attempts, c.late, counting, newest),
                results=tuple(results.get(c.counting_id, ())) if c.counting_id else (),
                gaps=sum(
                    s.matches_branch(branch)
                    for branch in gaps.get((s.spec.forge, s.spec.repository_id), ())
                ),
                force_pushes=marks.force_pushes,
                unconfirmed_times=c.unconfirmed - marks.api_unconfirmed,
                api_recorded=marks.api_recorded,
            )
        )
    return found


def _page(chosen: Select[Any]) -> CTE:
    """The page's sessions with their effective due date (the newest deadline change's,
    null included, else their own), worked out once per statement: MATERIALIZED keeps the
    planners from looking the newest change up again for every attempt joined to it
    (bench/ui_overview.py)."""
    ranged = chosen.order_by(None).subquery("ranged")
    due = case((ranged.c.change_id.is_not(None), ranged.c.changed_due_at), else_=ranged.c.due_at)
    return (
        select(ranged.c.id, ranged.c.repository_id, due.label("due"))
        .cte("page")
        .prefix_with("MATERIALIZED")
    )


@dataclass(frozen=True, slots=True)
class _Counted:
    attempts: int
    late: int
    unconfirmed: int  # by the times alone, API-recorded attempts included
    newest_id: int | None
    counting_id: int | None


_NONE = _Counted(0, 0, 0, None, None)


def _counts(conn: Connection, page: CTE, skew: timedelta) -> dict[int, _Counted]:
    """Per session, in one pass over its attempts: the counts, and the ids of its newest
    attempt and of its newest at or before the effective due date (core.grading.tally states
    the rule: by trusted time, ties by ledger order)."""
    due = page.c.due
    newest_key = _time_and_id(conn)
    query = (
        select(
            attempts.c.session_id,
            func.count(),
            func.sum(case((due < TRUSTED_TIME, 1), else_=0)),
            func.sum(case((_unconfirmed(skew, conn), 1), else_=0)),
            func.max(newest_key),
            func.max(case((or_(due.is_(None), due >= TRUSTED_TIME), newest_key))),
        )
        .join(page, page.c.id == attempts.c.session_id)
        .group_by(attempts.c.session_id)
    )
    return {
        r[0]: _Counted(
            int(r[1]),
            int(r[2] or 0),
            int(r[3] or 0),
            _id_of(conn, r[4]),
            _id_of(conn, r[5]),
        )
        for r in conn.execute(query)
    }


def _time_and_id(conn: Connection) -> ColumnElement[Any]:
    """An attempt's (trusted time, id) as one value whose max() is the newest attempt, so
    that one GROUP BY finds it without sorting the session's attempts (bench/ui_overview.py
    measures the overview this serves)."""
    if conn.dialect.name == "postgresql":
        micros = cast(func.extract("epoch", TRUSTED_TIME) * 1_000_000, BigInteger)
        return array((micros, cast(attempts.c.id, BigInteger)))
    # SQLite keeps times as fixed-width text, which sorts as the times do.
    return type_coerce(TRUSTED_TIME, String) + func.printf("%019d", attempts.c.id)


def _id_of(conn: Connection, key: Any) -> int | None:
    if key is None:
        return None
    return int(key[1]) if conn.dialect.name == "postgresql" else int(key[-19:])


def _unconfirmed(skew: timedelta, conn: Connection) -> ColumnElement[bool]:
    """core.model.is_time_unconfirmed in SQL: received_at - pushed_at > skew."""
    received, pushed = attempts.c.received_at, attempts.c.pushed_at
    if conn.dialect.name == "postgresql":
        return received - pushed > literal(skew)
    # SQLite keeps times as text; julianday() reads them as days (to the millisecond).
    seconds = (func.julianday(received) - func.julianday(pushed)) * 86400.0
    return seconds > skew.total_seconds()


def _shown(conn: Connection, ids: list[int]) -> dict[int, LabAttempt]:
    if not ids:
        return {}
    rows = conn.execute(attempt_query().where(attempts.c.id.in_(ids)))
    return {a.id: a for a in map(attempt_from_row, rows)}


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


def _gaps(conn: Connection, page: CTE) -> dict[tuple[str, int], list[str]]:
    """The branches of the open gaps on the page's repositories, per (forge, repository)."""
    open_gaps = gaps_query().subquery("open_gaps")
    rows = conn.execute(
        select(open_gaps.c.forge, open_gaps.c.repository_id, open_gaps.c.ref).where(
            open_gaps.c.repository_id.in_(select(page.c.repository_id))
        )
    )
    found: dict[tuple[str, int], list[str]] = {}
    for r in rows:
        if (branch := branch_of(r.ref)) is not None:
            found.setdefault((r.forge, r.repository_id), []).append(branch)
    return found


@dataclass(frozen=True, slots=True)
class _Marks:
    force_pushes: int
    api_recorded: int
    api_unconfirmed: int  # API-recorded attempts that the times alone would mark


_NO_MARKS = _Marks(0, 0, 0)


def _push_marks(conn: Connection, page: CTE, skew: timedelta) -> dict[int, _Marks]:
    """Per session, the pushes that rewrote history (core.model.Push.rewrites_history) and
    the attempts recorded from GitHub's API, read from the few pushes that are either."""
    rewrote = and_(pushes.c.forced, ~pushes.c.created, ~pushes.c.deleted)
    from_api = pushes.c.delivery_pk.in_(
        select(deliveries.c.id).where(
            deliveries.c.forge == "github",
            func.substr(deliveries.c.delivery_id, 1, len(API_DELIVERY_PREFIX))
            == API_DELIVERY_PREFIX,
        )
    )
    marked = (
        select(
            pushes.c.id,
            case((rewrote, 1), else_=0).label("rewrote"),
            case((from_api, 1), else_=0).label("api"),
        )
        .where(or_(rewrote, from_api))
        .cte("marked")
    )
    query = (
        select(
            attempts.c.session_id,
            func.count(func.distinct(case((marked.c.rewrote == 1, marked.c.id)))),
            func.sum(marked.c.api),
            func.sum(case((and_(marked.c.api == 1, _unconfirmed(skew, conn)), 1), else_=0)),
        )
        .join(marked, marked.c.id == attempts.c.push_id)
        .join(page, page.c.id == attempts.c.session_id)
        .group_by(attempts.c.session_id)
    )
    return {r[0]: _Marks(int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in conn.execute(query)}
