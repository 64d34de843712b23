"""`labledger sessions`: one group, its verbs kept beside what they use."""

from __future__ import annotations

from labledger.cli import completeness, discovery, grading, links
from labledger.cli.ledger import sessions

assert grading.sessions_extend  # importing cli.grading adds `sessions extend` to the group
sessions.add_command(completeness.sessions_import)
sessions.add_command(links.sessions_link)
sessions.add_command(discovery.sessions_discover)

__all__ = ["sessions"]
