"""`labledger sessions link`: a read-only web link for one session's student."""

from __future__ import annotations

import click

from labledger.cli.context import Context, pass_context
from labledger.http.ui.access import DEFAULT_LINK_DURATION, UiKeys


@click.command("link")
@click.argument("session_id", type=int)
@click.option(
    "--expires",
    default=DEFAULT_LINK_DURATION,
    show_default=True,
    help="How long the link stays valid: a number and s, m, h or d.",
)
@click.option(
    "--base-url",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="The address students reach labledger at (printed in front of the link).",
)
@pass_context
def sessions_link(obj: Context, session_id: int, expires: str, base_url: str) -> None:
    """Print a read-only link to one session (signed with LABLEDGER_UI_SECRET_KEY; rotating the
    key revokes every link). It shows that session's timeline and attempts, nothing else."""
    from labledger.http.ui.links import make_link  # the web framework, only when run

    link = make_link(UiKeys(obj.settings), obj.store, session_id, expires)
    click.echo(f"{base_url.rstrip('/')}{link.path}")
    click.echo(f"valid until {link.expires_at.isoformat()}", err=True)
