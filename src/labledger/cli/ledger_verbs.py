"""Sessions, attempts and ingest."""

from __future__ import annotations

import re
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from labledger.cli.context import EXIT_LEDGER_ERROR, TIME, Context, emit, json_option, pass_context
from labledger.core.errors import LedgerError

if TYPE_CHECKING:
    from labledger.http import schemas


@click.command("create")
@click.option("--lab-id", required=True)
@click.option("--subject-id", required=True)
@click.option(
    "--forge",
    default="github",
    show_default=True,
    callback=lambda _ctx, _param, value: _forge(value),
    help="github, gitlab or gitea (Forgejo too); FORGE:INSTANCE for a named instance.",
)
@click.option("--repository-id", required=True, type=int, help="The forge's numeric repository id.")
@click.option("--repository-name", help="owner/name, for display only.")
@click.option("--branch-glob", default="*", show_default=True)
@click.option("--opens-at", type=TIME, help="Default: now.")
@click.option("--due-at", type=TIME)
@click.option("--closes-at", type=TIME)
@click.option(
    "--allow-shared-repository",
    is_flag=True,
    help="Allow a second session of this lab on this repository (refused otherwise).",
)
@json_option
@pass_context
def sessions_create(obj: Context, /, as_json: bool, **options: Any) -> None:
    """Open a lab session."""
    from labledger.core.service import check_session_spec
    from labledger.http import schemas

    body = schemas.SessionIn(
        lab_id=options["lab_id"],
        subject_id=options["subject_id"],
        forge=options["forge"],
        repository_id=options["repository_id"],
        repository_full_name=options["repository_name"],
        branch_glob=options["branch_glob"],
        opens_at=options["opens_at"] or datetime.now(UTC),
        due_at=options["due_at"],
        closes_at=options["closes_at"],
    )
    spec = body.to_spec()
    check_session_spec(spec)
    opened = obj.store.open_sessions(
        [spec],
        "cli",
        datetime.now(UTC),
        allow_shared_repository=options["allow_shared_repository"],
    )[0]
    created = schemas.SessionOut.picked_up(opened)
    picked = f"; picked up {created.picked_up_attempts} earlier attempts"
    emit(created, as_json, [f"created session {created.id}{picked}"])


def _forge(value: str) -> str:
    from labledger.forges.scoped import FORGE_PATTERN

    if not re.match(FORGE_PATTERN, value):
        raise click.BadParameter(
            "use github, gitlab or gitea, or gitlab:NAME / gitea:NAME with a NAME of "
            "1-9 characters a-z, 0-9 or - (the instance of LABLEDGER_GITLAB_WEBHOOK_TOKEN etc.)"
        )
    return value


@click.command("list")
@click.option("--lab-id")
@json_option
@pass_context
def sessions_list(obj: Context, lab_id: str | None, as_json: bool) -> None:
    """List sessions, optionally of one lab."""
    from labledger.http import schemas

    found: list[schemas.SessionOut] = []
    after = 0
    while page := obj.store.list_sessions(lab_id=lab_id, after=after, limit=500):
        found.extend(schemas.SessionOut.of(s) for s in page)
        after = page[-1].id
    emit(found, as_json, (_session_line(s) for s in found))


def _session_line(s: schemas.SessionOut) -> str:
    due = s.due_at.isoformat() if s.due_at else "-"
    repo = s.repository_full_name or s.repository_id
    return f"{s.id:>6}  {s.lab_id}  {s.subject_id}  {repo}  branches={s.branch_glob}  due={due}"


@click.command("show")
@click.argument("session_id", type=int)
@json_option
@pass_context
def sessions_show(obj: Context, session_id: int, as_json: bool) -> None:
    """Show one session."""
    from labledger.http import schemas

    shown = schemas.SessionOut.of(obj.store.get_session(session_id))
    emit(shown, as_json, [f"{k}: {v}" for k, v in shown.model_dump(mode="json").items()])


@click.group()
def attempts() -> None:
    """Lab attempts."""


@attempts.command("list")
@click.option("--session", "session_id", type=int, help="Attempts of one session, in ledger order.")
@click.option("--commit", "commit_sha", help="Attempts of one commit, in any session.")
@json_option
@pass_context
def attempts_list(
    obj: Context, session_id: int | None, commit_sha: str | None, as_json: bool
) -> None:
    """List attempts of a session or of a commit."""
    from labledger.http import schemas

    if (session_id is None) == (commit_sha is None):
        raise click.UsageError("give exactly one of --session or --commit")
    store = obj.store
    if session_id is not None:
        found = []
        after = 0
        while page := store.session_attempts(session_id, after=after, limit=500):
            found.extend(page)
            after = page[-1].id
        store.get_session(session_id)  # a missing session is an error, not an empty list
    else:
        found = store.attempts_by_commit(commit_sha or "")
    sessions_by_id = {i: store.get_session(i) for i in {a.session_id for a in found}}
    skew = obj.settings.clock_skew
    shown = [schemas.AttemptOut.of(a, sessions_by_id[a.session_id], skew) for a in found]
    if not shown:
        what = f"session {session_id}" if session_id is not None else f"commit {commit_sha}"
        click.echo(f"no attempts of {what} recorded yet", err=True)
    emit(shown, as_json, (_attempt_line(a) for a in shown))


def _attempt_line(a: schemas.AttemptOut) -> str:
    late = "LATE" if a.late else "on time"
    unconfirmed = " (time unconfirmed)" if a.time_unconfirmed else ""
    return (
        f"{a.id:>8}  session {a.session_id}  {a.commit_sha[:12]}  {a.branch}  "
        f"{a.trusted_time.isoformat()}{unconfirmed}  {late}  by {a.sender.login}"
    )


@attempts.command("show")
@click.argument("attempt_id", type=int)
@json_option
@pass_context
def attempts_show(obj: Context, attempt_id: int, as_json: bool) -> None:
    """Show one attempt with its push and delivery."""
    from labledger.http.grading_schemas import AttemptDetailOut

    record = obj.store.get_attempt(attempt_id)
    detail = AttemptDetailOut.with_results(
        record,
        obj.store.get_session(record.attempt.session_id),
        obj.store.verifications([attempt_id]),
        obj.settings.clock_skew,
    )
    a, p = detail.attempt, detail.push
    lines = [
        f"attempt {a.id} (session {a.session_id}) {'LATE' if a.late else 'on time'}",
        f"  commit      {a.commit_sha}  tree {a.tree_sha}",
        f"  branch      {a.branch}",
        f"  pushed_at   {a.pushed_at.isoformat() if a.pushed_at else '-'} "
        + ("(time_unconfirmed: long before its arrival)" if a.time_unconfirmed else "(trusted)"),
        f"  received_at {a.received_at.isoformat()}",
        f"  claimed     {a.claimed_timestamp} (commit's own date, not trusted)",
        f"  sender      {a.sender.login} (id {a.sender.id})",
        f"  author      {a.author.name} <{a.author.email}> (claimed)",
        f"  files       +{len(a.changed_files.added)} ~{len(a.changed_files.modified)} "
        f"-{len(a.changed_files.removed)}",
        f"  push        {p.id} {p.ref} {p.before[:12]}..{p.after[:12]}"
        + (" FORCED" if p.rewrites_history else ""),
        f"  delivery    {detail.delivery.delivery_id} {detail.delivery.body_sha256}",
        f"  message     {a.message.splitlines()[0] if a.message else ''}",
        f"  status      {detail.verifications.status or 'not verified'}",
        *(
            f"    {v.verifier:<14} {v.status:<7} {_score(v.score, v.max_score)}  run {v.run_id}"
            f"  at {v.reported_at.isoformat()} (result {v.id})"
            for v in detail.verifications.current
        ),
    ]
    emit(detail, as_json, lines)


def _score(score: object, max_score: object) -> str:
    if score is None:
        return "-"
    return f"{score}/{max_score}" if max_score is not None else str(score)


@click.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@pass_context
def ingest(obj: Context, files: tuple[Path, ...]) -> None:
    """Record saved deliveries (headers, blank line, raw body) as the webhook would."""
    from labledger.services.ingest import receive_saved
    from labledger.services.saved import parse_saved_delivery

    store = obj.store
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    with click.progressbar(files, label="ingesting", file=sys.stderr) as bar:
        for path in bar:
            try:
                headers, body = parse_saved_delivery(path.read_bytes())
                answer = receive_saved(store, obj.settings, headers, body, datetime.now(UTC))
                outcomes[answer.outcome] += 1
            except LedgerError as exc:
                outcomes["refused"] += 1
                failures.append(f"{path}: {exc}")
    for line in failures:
        click.echo(line, err=True)
    click.echo(", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())))
    if failures:
        raise SystemExit(EXIT_LEDGER_ERROR)
