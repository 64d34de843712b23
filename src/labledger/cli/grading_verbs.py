"""Grading: verification results, deadline changes, lab reports."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from labledger.cli.context import (
    JSON_OBJECT,
    NUMBER,
    TIME,
    Context,
    emit,
    json_option,
    pass_context,
    validated,
)
from labledger.core.errors import VerificationConflict

if TYPE_CHECKING:
    from labledger.http import grading_schemas as gs


@click.command("extend")
@click.argument("session_id", type=int)
@click.option("--due-at", type=TIME, help="The new effective due date.")
@click.option("--closes-at", type=TIME, help="The new effective closing time.")
@click.option("--reason", required=True, help="Why (kept in the ledger and the audit log).")
@json_option
@pass_context
def sessions_extend(
    obj: Context,
    session_id: int,
    due_at: datetime | None,
    closes_at: datetime | None,
    reason: str,
    as_json: bool,
) -> None:
    """Change a session's due_at/closes_at by appending a deadline change."""
    from labledger.core.service import check_session_spec
    from labledger.http import schemas

    changes: dict[str, datetime | None] = {
        k: v for k, v in (("due_at", due_at), ("closes_at", closes_at)) if v is not None
    }
    if not changes:
        raise click.UsageError("give --due-at and/or --closes-at")
    changed = obj.store.apply_deadline_change(
        session_id, changes, reason, "cli", datetime.now(UTC), check_session_spec
    )
    shown = schemas.SessionOut.picked_up(changed)
    due = shown.due_at.isoformat() if shown.due_at else "-"
    line = f"session {shown.id}: due {due} ({shown.deadline_changes} changes)"
    emit(shown, as_json, [f"{line}; picked up {shown.picked_up_attempts} earlier attempts"])


@click.group()
def verifications() -> None:
    """Verification results (what a grader or CI concluded about an attempt)."""


@verifications.command("add")
@click.argument("attempt_id", type=int)
@click.option("--verifier", required=True)
@click.option("--run-id", required=True, help="The verifier's own run id (idempotency key).")
@click.option("--status", required=True, type=click.Choice(["passed", "failed", "error"]))
@click.option("--score", type=NUMBER)
@click.option("--max-score", type=NUMBER)
@click.option("--details", type=JSON_OBJECT, default="{}", help="JSON object (at most 16 KiB).")
@json_option
@pass_context
def verifications_add(obj: Context, /, attempt_id: int, as_json: bool, **options: object) -> None:
    """Report a result for an attempt; repeating the same run is harmless."""
    from labledger.core.service import check_verification
    from labledger.http import grading_schemas as gs

    body = validated(gs.VerificationIn, options)
    report = body.to_report(attempt_id, "cli", datetime.now(UTC))
    check_verification(report)
    result, created = obj.store.record_verification(report)
    if not created and not result.report.same_report(report):
        raise VerificationConflict(attempt_id, report.verifier, report.run_id)
    shown = gs.VerificationOut.of(result)
    verb = "recorded" if created else "already recorded"
    emit(shown, as_json, [f"{verb}: result {shown.id} for attempt {attempt_id}"])


@click.command()
@click.argument("lab_id")
@click.option("--csv", "as_csv", is_flag=True, help="CSV, one row per session.")
@click.option("--session", "session_id", type=int, help="Only this session (with --json).")
@json_option
@pass_context
def report(obj: Context, lab_id: str, as_csv: bool, session_id: int | None, as_json: bool) -> None:
    """Per session of a lab: attempts, late count, the attempt that counts and its status."""
    from labledger.services import grading

    if session_id is not None:
        one = grading.session_summary(obj.store, session_id, obj.settings.clock_skew)
        emit(one, as_json, [_summary_line(one)])
        return
    summary = grading.lab_summary(obj.store, lab_id, obj.settings.clock_skew)
    if not summary.sessions:
        click.echo(f"no sessions of lab {lab_id!r}; `labledger sessions list` shows them", err=True)
    if as_csv:
        click.echo(grading.lab_csv(summary), nl=False)
        return
    emit(summary, as_json, (_summary_line(s) for s in summary.sessions))


def _summary_line(s: gs.SessionSummaryOut) -> str:
    counting = s.counting_attempt
    counts = f"{counting.id} {counting.commit_sha[:12]}" if counting else "none"
    return (
        f"{s.session_id:>6}  {s.subject_id}  attempts={s.attempts} late={s.late_attempts}  "
        f"counts={counts} status={s.counting_status or '-'}  newest_late={s.newest_late}"
    )
