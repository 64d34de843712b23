"""Running labledger: serve and migrate."""

from __future__ import annotations

import ctypes
import os
import socket

import click

from labledger.cli.context import Context, pass_context
from labledger.core.errors import ConfigError


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
@click.option("--access-log/--no-access-log", default=True, show_default=True)
@click.option(
    "--proxy-headers/--no-proxy-headers",
    default=True,
    show_default=True,
    help="Take the client address and scheme from X-Forwarded-* sent by a trusted proxy.",
)
@click.option(
    "--forwarded-allow-ips",
    metavar="IPS",
    help="Comma-separated proxy addresses whose X-Forwarded-* headers are trusted "
    "(default: $FORWARDED_ALLOW_IPS, else 127.0.0.1).",
)
@click.option(
    "--malloc-arenas",
    default=2,
    show_default=True,
    type=click.IntRange(min=0),
    help="Cap glibc's malloc arenas (0: glibc's default); an explicit MALLOC_ARENA_MAX wins.",
)
@pass_context
def serve(
    obj: Context, /, host: str, port: int, workers: int, malloc_arenas: int, **options: object
) -> None:
    """Run the HTTP server (webhooks and API)."""
    import structlog
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from labledger.http.header_timeout import HeaderTimeoutH11Protocol
    from labledger.logs import configure_logging

    obj.settings.require_serving()
    obj.signer()  # refuses an unmigrated database, and a key of another ledger, before serving
    if obj.config_file is not None:
        os.environ["LABLEDGER_CONFIG"] = str(obj.config_file.resolve())
    listening = _listen(host, port)  # before the announcement: a busy port is one line
    if malloc_arenas:
        cap_malloc_arenas(malloc_arenas)
    configure_logging(obj.settings.log_level)
    structlog.get_logger("labledger.serve").info(
        "serving", url=f"http://{host}:{port}", database=_describe_db(obj), workers=workers
    )
    config = uvicorn.Config(
        "labledger.http.asgi:app_from_env",
        factory=True,
        http=HeaderTimeoutH11Protocol,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        log_level=obj.settings.log_level.lower(),
        **options,  # type: ignore[arg-type]
    )
    if workers > 1:
        Multiprocess(config, sockets=[listening]).run()
    else:
        uvicorn.Server(config).run(sockets=[listening])


M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def cap_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas before the request threads start (as MALLOC_ARENA_MAX does).

    glibc gives threads up to eight arenas per core; request threads that each parse a webhook
    leave freed memory in many arenas, which the process keeps. Fewer arenas keep the server's
    peak RSS lower after a burst: bench/arenas.py compares capped and uncapped in every
    `make bench`. Worker processes started by `--workers` read the same setting from the
    environment. An explicit MALLOC_ARENA_MAX wins; elsewhere than glibc this does nothing.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    os.environ["MALLOC_ARENA_MAX"] = str(arenas)  # for the worker processes
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return False
    return bool(libc.mallopt(M_ARENA_MAX, arenas))


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound as uvicorn would bind it, or a one-line fix."""
    # IPPROTO_TCP named, not left 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on
    # connections whose socket says TCP, and with it on, every answer written in two parts waits
    # for the client's delayed ACK.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as exc:
        listening.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror}; stop what uses it or "
            "choose another --port/--host"
        ) from None
    listening.set_inheritable(True)
    return listening


def _describe_db(obj: Context) -> str:
    return obj.ledger.engine.url.render_as_string(hide_password=True)


@click.command()
@click.option(
    "--app-role", help="PostgreSQL only: create a login role with SELECT and INSERT only."
)
@click.option(
    "--app-password-env",
    metavar="VAR",
    help="Name of an environment variable holding the app role's password.",
)
@click.option(
    "--origin",
    help="A new ledger's log name (default: labledger/<random>); an existing ledger keeps its own.",
)
@pass_context
def migrate(
    obj: Context, app_role: str | None, app_password_env: str | None, origin: str | None
) -> None:
    """Create or upgrade the schema (and optionally the restricted application role)."""
    from labledger.compose import migrations
    from labledger.core.note import is_valid_key_name

    if origin is not None and not is_valid_key_name(origin):
        raise click.BadParameter(f"{origin!r}: no spaces or '+' allowed", param_hint="--origin")
    engine = obj.engine
    if app_role and engine.dialect.name != "postgresql":
        raise ConfigError("--app-role needs PostgreSQL: SQLite has no roles; drop the option")
    before = migrations.current_revision(engine)
    migrations.upgrade(engine, origin=origin)
    after = migrations.current_revision(engine)
    click.echo(f"schema: {before or 'empty'} -> {after}")
    click.echo(f"ledger origin: {migrations.ledger_origin(engine)}")
    if app_role:
        password = os.environ.get(app_password_env) if app_password_env else None
        if app_password_env and password is None:
            raise ConfigError(f"environment variable {app_password_env} is not set")
        migrations.create_app_role(engine, app_role, password)
        click.echo(f"role {app_role}: SELECT and INSERT only on the ledger tables")
