"""Where the time goes: a sampling profile of `labledger serve` during one scenario.

    python -m bench.profile OUT.json serve --host ... --port ...   (as `labledger serve`)

The server runs in this process under a sampler thread that, while switched on (SIGUSR1
starts, SIGUSR2 stops), reads every thread's Python stack at a fixed interval. Request
threads, the event loop and the writer all count, which cProfile (one thread) would miss.
A thread waiting for work (its innermost frame one of IDLE) is not counted: the shares are
of the time some thread was doing something. Written to OUT.json when the server exits.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

INTERVAL_S = 0.005
TOP = 15
# Innermost frames of a thread that waits for work: the event loop's select, a worker's queue.
IDLE = {
    ("selectors", "select"),
    ("threading", "wait"),
    ("threading", "_wait_for_tstate_lock"),
    ("threading", "join"),  # Python 3.13 joins in C, below Thread.join itself
    ("queue", "get"),
    ("thread", "_worker"),  # concurrent.futures: SimpleQueue.get in C
}

# Frames below every busy stack (thread start-up, the event loop, the command line) say
# nothing about where the time goes; they are left out of the cumulative list.
SCAFFOLD = (
    "threading.py:", "contextlib.py:", "<frozen runpy>:", "asyncio/runners.py:",
    "asyncio/base_events.py:", "asyncio/events.py:", "concurrent/", "click/", "bench/profile.py:",
    "labledger/cli/", "uvicorn/server.py:", "uvicorn/_compat.py:", "anyio/_backends/_asyncio.py:",
)  # fmt: skip


def _module(path: str) -> str:
    return Path(path).stem


def package_of(path: str) -> str:
    """labledger, a third-party distribution's top package, or the standard library."""
    parts = Path(path).parts
    if "site-packages" in parts:
        after = parts[parts.index("site-packages") + 1 :]
        return after[0].removesuffix(".py") if after else "site-packages"
    if "labledger" in parts:
        return "labledger"
    return "Python standard library"


def _name(frame: FrameType) -> str:
    """`path:line:qualname`, the path from its package (or from the standard library)."""
    code = frame.f_code
    parts = Path(code.co_filename).parts
    for index in range(len(parts) - 1, -1, -1):
        if parts[index] in ("site-packages", "src") or parts[index].startswith("python3."):
            parts = parts[index + 1 :]
            break
        if parts[index] == "bench":
            parts = parts[index:]
            break
    return f"{'/'.join(parts)}:{code.co_firstlineno}:{code.co_qualname}"


class Sampler:
    """Counts, per function, the busy samples it was on the stack (cumulative) and innermost."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.on = threading.Event()
        self.stopped = threading.Event()
        self.samples = 0
        self.cumulative: Counter[str] = Counter()
        self.own: Counter[str] = Counter()
        self.packages: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._run, name="bench-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        me = threading.get_ident()
        while not self.stopped.is_set():
            if not self.on.wait(0.1):
                continue
            for ident, frame in sys._current_frames().items():
                if ident != me:
                    self._count(frame)
            self.stopped.wait(self.interval_s)

    def _count(self, leaf: FrameType) -> None:
        if (_module(leaf.f_code.co_filename), leaf.f_code.co_name) in IDLE:
            return
        self.samples += 1
        self.own[_name(leaf)] += 1
        self.packages[package_of(leaf.f_code.co_filename)] += 1
        seen = set()
        frame: FrameType | None = leaf
        while frame is not None:
            seen.add(_name(frame))
            frame = frame.f_back
        self.cumulative.update(seen)

    def summary(self) -> dict[str, Any]:
        total = max(self.samples, 1)
        telling = [(n, c) for n, c in self.cumulative.most_common() if not n.startswith(SCAFFOLD)]
        return {
            "interval_ms": self.interval_s * 1000,
            "samples": self.samples,
            "cumulative": [
                {"function": n, "share": round(c / total, 4), "own": round(self.own[n] / total, 4)}
                for n, c in telling[:TOP]
            ],
            "own": [
                {"function": n, "share": round(c / total, 4)} for n, c in self.own.most_common(TOP)
            ],
            "packages": [
                {"package": n, "share": round(c / total, 4)} for n, c in self.packages.most_common()
            ],
        }


def main(argv: list[str]) -> None:
    out, serve_args = Path(argv[0]), argv[1:]
    sampler = Sampler()
    signal.signal(signal.SIGUSR1, lambda *_: sampler.on.set())
    signal.signal(signal.SIGUSR2, lambda *_: sampler.on.clear())
    # uvicorn raises SIGTERM again once it has shut down: exit through `finally`, not at once.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sampler.start()
    from labledger.cli import run

    sys.argv = ["labledger", *serve_args]
    try:
        run()
    finally:
        sampler.stopped.set()
        out.write_text(json.dumps(sampler.summary(), indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
