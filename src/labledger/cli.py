"""The `labledger` command line. `main()` is the one place CLI errors become exit codes."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel
from sqlalchemy import Engine

from labledger.config import ConfigError, Settings
from labledger.core.errors import LedgerError
from labledger.core.service import check_session_spec
from labledger.http import schemas
from labledger.saved import parse_saved_delivery
from labledger.storage import migrate as migrations
from labledger.storage.engine import make_engine
from labledger.storage.sql_store import SqlStore
from labledger.webhooks import receive_github

EXIT_LEDGER_ERROR = 1
EXIT_USAGE = 2


class Context:
    """Settings and store, made on first use so `--help` needs no database."""

    def __init__(self, config_file: Path | None) -> None:
        self.config_file = config_file
        self._settings: Settings | None = None
        self._engine: Engine | None = None
        self._store: SqlStore | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env(os.environ, self.config_file)
        return self._settings

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.settings.database_url)
        return self._engine

    @property
    def store(self) -> SqlStore:
        if self._store is None:
            engine = self.engine
            if not migrations.is_up_to_date(engine):
                raise ConfigError(
                    f"the database at {engine.url.render_as_string(hide_password=True)} is not "
                    "migrated to this version of labledger; run `labledger migrate` first"
                )
            self._store = SqlStore(engine)
        return self._store

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


pass_context = click.make_pass_decorator(Context)


class AwareDateTime(click.ParamType[datetime]):
    name = "ISO-8601 time with offset"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO-8601 time", param, ctx)
        if moment.tzinfo is None:
            self.fail(f"{value!r} needs a UTC offset, e.g. 2026-12-01T23:59:00+01:00", param, ctx)
        return moment


TIME = AwareDateTime()
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print the API's JSON instead of text."
)


def _emit(model: BaseModel | Sequence[BaseModel], as_json: bool, text: Iterable[str]) -> None:
    if as_json:
        data = (
            [m.model_dump(mode="json") for m in model]
            if isinstance(model, Sequence)
            else model.model_dump(mode="json")
        )
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        for line in text:
            click.echo(line)


@click.group()
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML file with LABLEDGER_* keys (environment variables win).",
)
@click.version_option(package_name="labledger")
@click.pass_context
def cli(ctx: click.Context, config_file: Path | None) -> None:
    """labledger: the Lab Attempt Ledger."""
    ctx.obj = Context(config_file)
    ctx.call_on_close(ctx.obj.close)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
@click.option("--access-log/--no-access-log", default=True, show_default=True)
@pass_context
def serve(obj: Context, host: str, port: int, workers: int, access_log: bool) -> None:
    """Run the HTTP server (webhooks and API)."""
    import uvicorn

    obj.settings.require_serving()
    _ = obj.store  # refuses an unmigrated database before the server starts
    if obj.config_file is not None:
        os.environ["LABLEDGER_CONFIG"] = str(obj.config_file.resolve())
    click.echo(
        f"labledger serving on http://{host}:{port} (database: {_describe_db(obj)})", err=True
    )
    uvicorn.run(
        "labledger.http.asgi:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=access_log,
        log_level=obj.settings.log_level.lower(),
    )


def _describe_db(obj: Context) -> str:
    return obj.store.engine.url.render_as_string(hide_password=True)


@cli.command()
@click.option(
    "--app-role", help="PostgreSQL only: create a login role with SELECT and INSERT only."
)
@click.option(
    "--app-password-env",
    metavar="VAR",
    help="Name of an environment variable holding the app role's password.",
)
@pass_context
def migrate(obj: Context, app_role: str | None, app_password_env: str | None) -> None:
    """Create or upgrade the schema (and optionally the restricted application role)."""
    engine = obj.engine
    before = migrations.current_revision(engine)
    migrations.upgrade(engine)
    after = migrations.current_revision(engine)
    click.echo(f"schema: {before or 'empty'} -> {after}")
    if app_role:
        password = os.environ.get(app_password_env) if app_password_env else None
        if app_password_env and password is None:
            raise ConfigError(f"environment variable {app_password_env} is not set")
        migrations.create_app_role(engine, app_role, password)
        click.echo(f"role {app_role}: SELECT and INSERT only on the ledger tables")


@cli.group()
def sessions() -> None:
    """Lab sessions."""


@sessions.command("create")
@click.option("--lab-id", required=True)
@click.option("--subject-id", required=True)
@click.option("--repository-id", required=True, type=int, help="The forge's numeric repository id.")
@click.option("--repository-name", help="owner/name, for display only.")
@click.option("--branch-glob", default="*", show_default=True)
@click.option("--opens-at", type=TIME, help="Default: now.")
@click.option("--due-at", type=TIME)
@click.option("--closes-at", type=TIME)
@json_option
@pass_context
def sessions_create(obj: Context, /, as_json: bool, **options: Any) -> None:
    """Open a lab session."""
    body = schemas.SessionIn(
        lab_id=options["lab_id"],
        subject_id=options["subject_id"],
        repository_id=options["repository_id"],
        repository_full_name=options["repository_name"],
        branch_glob=options["branch_glob"],
        opens_at=options["opens_at"] or datetime.now(UTC),
        due_at=options["due_at"],
        closes_at=options["closes_at"],
    )
    spec = body.to_spec()
    check_session_spec(spec)
    created = schemas.SessionOut.of(obj.store.create_session(spec, "cli", datetime.now(UTC)))
    _emit(created, as_json, [f"created session {created.id}"])


@sessions.command("list")
@click.option("--lab-id")
@json_option
@pass_context
def sessions_list(obj: Context, lab_id: str | None, as_json: bool) -> None:
    """List sessions, optionally of one lab."""
    found: list[schemas.SessionOut] = []
    after = 0
    while page := obj.store.list_sessions(lab_id=lab_id, after=after, limit=500):
        found.extend(schemas.SessionOut.of(s) for s in page)
        after = page[-1].id
    _emit(found, as_json, (_session_line(s) for s in found))


def _session_line(s: schemas.SessionOut) -> str:
    due = s.due_at.isoformat() if s.due_at else "-"
    repo = s.repository_full_name or s.repository_id
    return f"{s.id:>6}  {s.lab_id}  {s.subject_id}  {repo}  branches={s.branch_glob}  due={due}"


@sessions.command("show")
@click.argument("session_id", type=int)
@json_option
@pass_context
def sessions_show(obj: Context, session_id: int, as_json: bool) -> None:
    """Show one session."""
    shown = schemas.SessionOut.of(obj.store.get_session(session_id))
    _emit(shown, as_json, [f"{k}: {v}" for k, v in shown.model_dump(mode="json").items()])


@cli.group()
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
    shown = [schemas.AttemptOut.of(a, sessions_by_id[a.session_id]) for a in found]
    _emit(shown, as_json, (_attempt_line(a) for a in shown))


def _attempt_line(a: schemas.AttemptOut) -> str:
    late = "LATE" if a.late else "on time"
    return (
        f"{a.id:>8}  session {a.session_id}  {a.commit_sha[:12]}  {a.branch}  "
        f"{a.trusted_time.isoformat()}  {late}  by {a.sender.login}"
    )


@attempts.command("show")
@click.argument("attempt_id", type=int)
@json_option
@pass_context
def attempts_show(obj: Context, attempt_id: int, as_json: bool) -> None:
    """Show one attempt with its push and delivery."""
    record = obj.store.get_attempt(attempt_id)
    detail = schemas.AttemptDetail.of(record, obj.store.get_session(record.attempt.session_id))
    a, p = detail.attempt, detail.push
    lines = [
        f"attempt {a.id} (session {a.session_id}) {'LATE' if a.late else 'on time'}",
        f"  commit      {a.commit_sha}  tree {a.tree_sha}",
        f"  branch      {a.branch}",
        f"  pushed_at   {a.pushed_at.isoformat() if a.pushed_at else '-'} (trusted)",
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
    ]
    _emit(detail, as_json, lines)


@cli.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@pass_context
def ingest(obj: Context, files: tuple[Path, ...]) -> None:
    """Record saved deliveries (headers, blank line, raw body) as the webhook would."""
    secret = obj.settings.github_secret_bytes()
    store = obj.store
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    with click.progressbar(files, label="ingesting", file=sys.stderr) as bar:
        for path in bar:
            try:
                headers, body = parse_saved_delivery(path.read_bytes())
                answer = receive_github(
                    store, secret, headers, body, datetime.now(UTC), obj.settings.max_body_bytes
                )
                outcomes[answer.outcome] += 1
            except LedgerError as exc:
                outcomes["refused"] += 1
                failures.append(f"{path}: {exc}")
    for line in failures:
        click.echo(line, err=True)
    click.echo(", ".join(f"{n} {k}" for k, n in sorted(outcomes.items())))
    if failures:
        raise SystemExit(EXIT_LEDGER_ERROR)


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="labledger", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return EXIT_USAGE
    except click.ClickException as exc:
        exc.show()
        return EXIT_USAGE
    except ConfigError as exc:
        click.echo(f"labledger: configuration error: {exc}", err=True)
        return EXIT_USAGE
    except LedgerError as exc:
        click.echo(f"labledger: error: {exc}", err=True)
        return EXIT_LEDGER_ERROR
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_LEDGER_ERROR
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
