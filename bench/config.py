"""The sizes of the two suites: `full` (the figures) and `smoke` (seconds; checks it still runs)."""

from __future__ import annotations

from dataclasses import dataclass

SATURATION_REPOS = tuple(range(1_000_001, 1_000_101))
STORM_REPO = 3_000_001


@dataclass(frozen=True, slots=True)
class BenchConfig:
    mode: str
    runs: int  # each figure is the median of this many runs (min and max beside it)
    levels: tuple[int, ...]  # closed-loop concurrency levels
    warmup_s: float
    measure_s: float
    pool_cap: int  # most deliveries prepared for one saturation level
    saturation_level: int  # the level whose latency is reported "at saturation"
    rate: float  # offered deliveries/s of the open loop
    rate_s: float
    rate_connections: int
    burst_pushes: int
    burst_sessions: int
    burst_concurrency: int
    storm_copies: int
    storm_concurrency: int
    read_attempts: int
    read_requests: int  # per kind of read and round
    read_rounds: int
    tamper_level: int = 8  # concurrent writers for tamper evidence on vs off (issue 3)
    verify_attempts: int = 1_000_000  # bulk-loaded attempts whose entries `verify` checks
    verify_rounds: int = 3  # `verify` timings (with and without bodies) on that one ledger
    receipts: int = 200  # receipts generated, one random attempt each
    coverage_samples: int = 120  # deliveries timed from their 202 to their receipt
    coverage_rate: float = 4.0  # those deliveries per second (one proof poller each)
    coverage_poll_s: float = 0.02

    @property
    def burst_repos(self) -> tuple[int, ...]:
        return tuple(range(2_000_001, 2_000_001 + self.burst_sessions))

    @property
    def all_repos(self) -> list[int]:
        return [*SATURATION_REPOS, *self.burst_repos, STORM_REPO]


FULL = BenchConfig(
    mode="full",
    runs=3,
    levels=(1, 8, 32, 64),
    warmup_s=0.5,
    measure_s=3.0,
    pool_cap=6000,
    saturation_level=32,
    rate=200.0,
    rate_s=5.0,
    rate_connections=256,
    burst_pushes=2000,
    burst_sessions=500,
    burst_concurrency=100,
    storm_copies=500,
    storm_concurrency=50,
    read_attempts=1_000_000,
    read_requests=300,
    read_rounds=3,
)

SMOKE = BenchConfig(
    mode="smoke",
    runs=1,
    levels=(1, 4),
    warmup_s=0.1,
    measure_s=0.4,
    pool_cap=150,
    saturation_level=4,
    rate=20.0,
    rate_s=0.5,
    rate_connections=8,
    burst_pushes=40,
    burst_sessions=10,
    burst_concurrency=8,
    storm_copies=20,
    storm_concurrency=5,
    read_attempts=2_000,
    read_requests=10,
    read_rounds=1,
    tamper_level=4,
    verify_attempts=2_000,
    verify_rounds=1,
    receipts=10,
    coverage_samples=4,
    coverage_rate=8.0,
)
