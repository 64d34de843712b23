"""The web worker's supervision of its integrator process, with a stand-in process."""

from __future__ import annotations

import asyncio
from typing import cast

from labledger.http.integrator import supervise
from labledger.services.integrate import IntegratorProcess


class FlakyChild:
    """Fails to start once, then starts but exits at once twice, then stays up."""

    def __init__(self) -> None:
        self.starts = 0
        self.running = False

    def start(self) -> None:
        self.starts += 1
        if self.starts == 1:
            raise OSError("no such interpreter")
        self.running = self.starts >= 4

    def exit_code(self) -> int | None:
        return None if self.running else 3


async def _supervise_until_up(child: FlakyChild) -> None:
    task = asyncio.create_task(supervise(cast(IntegratorProcess, child), 0.001))
    for _ in range(2000):
        if child.running:
            break
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.02)  # it stays up: no further start
    task.cancel()


def test_a_child_that_cannot_start_or_dies_is_started_again_until_it_stays_up() -> None:
    child = FlakyChild()
    asyncio.run(_supervise_until_up(child))
    assert child.running and child.starts == 4


def test_a_round_in_the_web_worker_waits_for_the_interval_or_enough_entries() -> None:
    """`serve`'s integrator thread starts a round before the interval once
    EARLY_ROUND_ENTRIES more entries are queued, and not for fewer."""
    from labledger.http.integrator import EARLY_ROUND_ENTRIES, next_round

    counted = [1_000]

    async def rounds() -> list[str]:
        seen = []
        await asyncio.wait_for(next_round(0.05, lambda: counted[0], counted[0]), 5)
        seen.append("after the interval, with nothing queued")
        waiting = asyncio.create_task(next_round(3600, lambda: counted[0], counted[0]))
        counted[0] += EARLY_ROUND_ENTRIES - 1
        await asyncio.sleep(0.3)
        seen.append("done" if waiting.done() else "still waiting, one entry short")
        counted[0] += 1
        await asyncio.wait_for(waiting, 5)
        seen.append("early, once enough were queued")
        without_count = asyncio.create_task(next_round(3600))
        await asyncio.sleep(0.2)
        seen.append("done" if without_count.done() else "no count: the interval only")
        without_count.cancel()
        return seen

    assert asyncio.run(rounds()) == [
        "after the interval, with nothing queued",
        "still waiting, one entry short",
        "early, once enough were queued",
        "no count: the interval only",
    ]
