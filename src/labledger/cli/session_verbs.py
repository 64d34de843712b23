"""`labledger sessions`: one group, its verbs kept beside what they use."""

from __future__ import annotations

from labledger.cli import completeness_verbs, discovery_verbs, grading_verbs, link_verbs
from labledger.cli.ledger_verbs import sessions

assert (
    grading_verbs.sessions_extend
)  # importing cli.grading_verbs adds `sessions extend` to the group
sessions.add_command(completeness_verbs.sessions_import)
sessions.add_command(link_verbs.sessions_link)
sessions.add_command(discovery_verbs.sessions_discover)

__all__ = ["sessions"]
