"""Forge adapters: each turns a forge's signed payload into core values."""

from __future__ import annotations

from collections.abc import Callable

from labledger.core.model import Push
from labledger.forges import gitea, github, gitlab

# A forge's push parser, by forge name: a recorded body is read again through the very
# parser that read it at receipt, so a push picked up later yields the same commits.
PUSH_PARSERS: dict[str, Callable[[bytes], Push]] = {
    github.FORGE: github.parse_github_push,
    "gitlab": gitlab.parse_recorded_gitlab_push,
    gitea.FORGE: lambda body: gitea.parse_gitea_push(body).push,
}


def parse_recorded_push(forge: str, body: bytes) -> Push | None:
    """Parse a recorded push body of `forge` (an instance `gitlab:NAME` is read as `gitlab`);
    None for a forge with no parser registered."""
    parser = PUSH_PARSERS.get(forge.partition(":")[0])
    return None if parser is None else parser(body)
