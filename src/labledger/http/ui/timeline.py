"""A session's attempts against time, laid out for the server-drawn SVG (templates/timeline.svg).

Pure: a session, its attempts and their pushes in; positions out. Attempts of one push share a
column (the push's commits grouped), lateness is judged by trusted time against the effective
due date, and a force-push that rewrote history is marked on its column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from labledger.core.model import LabAttempt, LabSession, PushRecord

WIDTH = 960
LEFT, RIGHT, TOP, BASE = 40, 920, 40, 220
DOT_STEP = 14


@dataclass(frozen=True, slots=True)
class Line:
    x: float
    label: str
    kind: str  # opens, due, original-due, closes
    at: datetime


@dataclass(frozen=True, slots=True)
class Dot:
    x: float
    y: float
    attempt_id: int
    label: str
    late: bool


@dataclass(frozen=True, slots=True)
class Column:
    x: float
    top: float
    forced: bool
    push_id: int
    dots: tuple[Dot, ...]


@dataclass(frozen=True, slots=True)
class Timeline:
    width: int
    height: int
    base: float
    lines: tuple[Line, ...]
    columns: tuple[Column, ...]
    start: datetime
    end: datetime


def lay_out(
    session: LabSession, attempts: Sequence[LabAttempt], pushes: Mapping[int, PushRecord]
) -> Timeline:
    spec = session.spec
    marks = [("opens", "opens", spec.opens_at)]
    if session.original_due_at and session.original_due_at != spec.due_at:
        marks.append(("original-due", "due (original)", session.original_due_at))
    if spec.due_at:
        marks.append(("due", "due", spec.due_at))
    if spec.closes_at:
        marks.append(("closes", "closes", spec.closes_at))
    times = [m[2] for m in marks] + [a.trusted_time for a in attempts]
    start, end = min(times), max(times)
    span = max((end - start).total_seconds(), 3600.0)
    start, end = start - timedelta(seconds=span * 0.03), end + timedelta(seconds=span * 0.03)

    def x_of(at: datetime) -> float:
        return LEFT + (RIGHT - LEFT) * (at - start).total_seconds() / (end - start).total_seconds()

    columns = []
    by_push: dict[int, list[LabAttempt]] = {}
    for attempt in attempts:
        by_push.setdefault(attempt.push_id, []).append(attempt)
    tallest = 0
    for push_id, group in by_push.items():
        x = x_of(group[0].trusted_time)
        dots = tuple(
            Dot(
                x=x,
                y=BASE - 12 - i * DOT_STEP,
                attempt_id=a.id,
                label=f"attempt {a.id}: {a.commit.sha[:10]} at {a.trusted_time:%Y-%m-%d %H:%M} UTC",
                late=session.is_late(a.trusted_time),
            )
            for i, a in enumerate(group)
        )
        tallest = max(tallest, len(group))
        push = pushes.get(push_id)
        forced = bool(push and push.forced and not push.created)
        columns.append(Column(x, dots[-1].y - 10, forced, push_id, dots))
    height = int(BASE + 40 + max(0, tallest * DOT_STEP - (BASE - TOP - 20)))
    shift = height - (BASE + 40)
    lines = tuple(Line(x_of(at), label, kind, at) for kind, label, at in marks)
    if shift:
        columns = [_shifted(c, shift) for c in columns]
    return Timeline(WIDTH, height, BASE + shift, lines, tuple(columns), start, end)


def _shifted(column: Column, dy: float) -> Column:
    dots = tuple(Dot(d.x, d.y + dy, d.attempt_id, d.label, d.late) for d in column.dots)
    return Column(column.x, column.top + dy, column.forced, column.push_id, dots)
