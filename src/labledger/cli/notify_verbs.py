"""Delivering notifications: `labledger dispatch`, dead letters and replays."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import click

from labledger.cli.context import Context, pass_context
from labledger.core.errors import ConfigError

if TYPE_CHECKING:
    from labledger.services.notify import Dispatcher


def _dispatcher(obj: Context) -> Dispatcher:
    from labledger.services.notify import Dispatcher

    return Dispatcher.from_settings(obj.settings, obj.ledger.outbox)


@click.group(invoke_without_command=True)
@click.option("--once", is_flag=True, help="One round over what is due, then exit.")
@pass_context
@click.pass_context
def dispatch(ctx: click.Context, obj: Context, once: bool) -> None:
    """Send due notifications to LABLEDGER_SUBSCRIBERS (signed, at least once)."""
    if ctx.invoked_subcommand is not None:
        return
    if not obj.settings.subscribers:
        raise ConfigError("no LABLEDGER_SUBSCRIBERS configured; nothing to dispatch to")
    dispatcher = _dispatcher(obj)
    while True:
        done = dispatcher.run_once()
        if done.delivered or done.retried or done.dead or once:
            click.echo(
                f"delivered {done.delivered}, retrying {done.retried}, dead {done.dead}", err=True
            )
        if once:
            return
        time.sleep(obj.settings.dispatch_interval_seconds)


@dispatch.command("dead-letters")
@pass_context
def dead_letters(obj: Context) -> None:
    """Events that exhausted their retry budget."""
    for event in obj.ledger.outbox.in_state("dead"):
        click.echo(
            f"{event.id:>8}  {event.subscriber}  {event.event_type}  {event.event_id}  "
            f"tries={event.attempts}  last error: {event.last_error or '-'}"
        )


@dispatch.command("replay")
@click.argument("outbox_ids", type=int, nargs=-1, required=True)
@pass_context
def replay(obj: Context, outbox_ids: tuple[int, ...]) -> None:
    """Make dead letters due again (same event id, a fresh retry budget)."""
    dispatcher = _dispatcher(obj)
    for outbox_id in outbox_ids:
        event = dispatcher.replay(outbox_id)
        click.echo(f"{event.id}: {event.event_id} queued again for {event.subscriber}")
