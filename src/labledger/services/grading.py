"""Grading summaries: one session's, and a lab's page by page. The API, the lab CSV,
`labledger report` and the web view's lab overview all read them here."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

from labledger.core.errors import NotFound
from labledger.core.grading import summarize
from labledger.core.model import CLOCK_SKEW
from labledger.http import grading_schemas as gs
from labledger.storage.sql_store import SqlStore
from labledger.storage.summary_reads import SessionTally

# Sessions per page of a lab summary: each page is read in the same few statements.
PAGE_SESSIONS = 1000


def session_summary(
    store: SqlStore, session_id: int, skew: timedelta = CLOCK_SKEW
) -> gs.SessionSummaryOut:
    """The attempt that counts, its current status, the newest attempt, lateness and marks."""
    found = store.session_tallies(session_id=session_id, skew=skew)
    if not found:
        raise NotFound("session", session_id)
    return _summary(found[0], skew)


def lab_page(
    store: SqlStore,
    lab_id: str,
    skew: timedelta = CLOCK_SKEW,
    after: int = 0,
    limit: int = PAGE_SESSIONS,
) -> gs.LabSummaryOut:
    """The lab's sessions with ids after `after`, at most `limit`; `next_after` reads on."""
    found = store.session_tallies(lab_id=lab_id, after=after, limit=limit, skew=skew)
    return gs.LabSummaryOut(
        lab_id=lab_id,
        sessions=[_summary(t, skew) for t in found],
        next_after=found[-1].session.id if len(found) == limit else None,
    )


def lab_summary(store: SqlStore, lab_id: str, skew: timedelta = CLOCK_SKEW) -> gs.LabSummaryOut:
    """Every session of the lab, read a page at a time."""
    whole = lab_page(store, lab_id, skew)
    after = whole.next_after
    while after is not None:
        page = lab_page(store, lab_id, skew, after)
        whole.sessions.extend(page.sessions)
        after = page.next_after
    whole.next_after = None
    return whole


def lab_csv(summary: gs.LabSummaryOut) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(gs.CSV_COLUMNS)
    for s in summary.sessions:
        writer.writerow(gs.csv_row(s))
    return out.getvalue()


def _summary(t: SessionTally, skew: timedelta) -> gs.SessionSummaryOut:
    return gs.SessionSummaryOut.of(
        summarize(t.session, t.counted, t.results, skew),
        gaps=t.gaps,
        force_pushes=t.force_pushes,
        unconfirmed_times=t.unconfirmed_times,
        api_recorded_attempts=t.api_recorded,
    )
