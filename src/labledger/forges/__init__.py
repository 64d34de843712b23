"""Forge adapters: each turns a forge's signed payload into core values."""

from __future__ import annotations

from collections.abc import Callable

from labledger.core.model import Push
from labledger.forges import gitea, github, github_activity, gitlab

# A push parser, by the name of what recorded the body: a recorded body is read again through
# the very parser that read it at receipt, so a push picked up later yields the same commits.
PUSH_PARSERS: dict[str, Callable[[bytes], Push]] = {
    github.FORGE: github.parse_github_push,
    github_activity.SOURCE: github_activity.parse_api_push,
    "gitlab": gitlab.parse_recorded_gitlab_push,
    gitea.FORGE: lambda body: gitea.parse_gitea_push(body).push,
}


def recorded_by(forge: str, body: bytes) -> str:
    """The PUSH_PARSERS key of a body recorded for `forge` (an instance `gitlab:NAME` is
    `gitlab`): GitHub's API evidence names itself by its first bytes, which no webhook
    body may carry."""
    name = forge.partition(":")[0]
    if name == github.FORGE and github_activity.is_evidence(body):
        return github_activity.SOURCE
    return name


def parse_recorded_push(forge: str, body: bytes) -> Push | None:
    """Parse a recorded push body of `forge`; None for a forge with no parser registered."""
    parser = PUSH_PARSERS.get(recorded_by(forge, body))
    return None if parser is None else parser(body)
