"""`labledger sessions`: one group whose verbs live beside what they use, imported on use."""

from __future__ import annotations

from labledger.cli import LazyVerbs

# name -> ("module:attribute", the verb's one-line help, shown by `sessions --help`).
SESSION_VERBS: dict[str, tuple[str, str]] = {
    "create": ("labledger.cli.ledger_verbs:sessions_create", "Open a lab session."),
    "list": ("labledger.cli.ledger_verbs:sessions_list", "List sessions, optionally of one lab."),
    "show": ("labledger.cli.ledger_verbs:sessions_show", "Show one session."),
    "extend": (
        "labledger.cli.grading_verbs:sessions_extend",
        "Change a session's deadlines (appended, audited).",
    ),
    "import": (
        "labledger.cli.completeness_verbs:sessions_import",
        "Create the sessions of a CSV roster, all rows or none.",
    ),
    "link": ("labledger.cli.link_verbs:sessions_link", "Print a read-only link to one session."),
    "discover": (
        "labledger.cli.discovery_verbs:sessions_discover",
        "One session per matching repository of an organisation.",
    ),
}

sessions = LazyVerbs("sessions", verbs=SESSION_VERBS, help="Lab sessions.")
