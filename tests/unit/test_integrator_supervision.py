"""The web worker's supervision of its integrator process, with a stand-in process."""

from __future__ import annotations

import asyncio
from typing import cast

from labledger.http.integrator import supervise
from labledger.sequencer import IntegratorProcess


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
