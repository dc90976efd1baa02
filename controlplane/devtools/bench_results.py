"""The benchmark's figures: what each runner process counted, and one measured row."""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path

from controlplane.devtools.bench_engines import Reaped
from runs.models import TERMINAL_STATUSES, Engine


@dataclass(frozen=True)
class RunnerReport:
    """What one runner process counted while draining (runs/instrumentation.py); for a
    process that counts nothing, its CPU and peak memory only (None: not counted)."""

    pid: int
    statements: int | None
    round_trips: int | None
    commits: int | None
    rollbacks: int | None
    cpu_seconds: float
    peak_rss_kb: int

    @classmethod
    def read(cls, path: Path) -> RunnerReport:
        data = json.loads(path.read_text())
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    @classmethod
    def of(cls, runner: Reaped) -> RunnerReport:
        """Return what the system knows of an exited process that wrote no counts."""
        return cls(
            pid=runner.process.pid,
            statements=None,
            round_trips=None,
            commits=None,
            rollbacks=None,
            cpu_seconds=runner.cpu_seconds,
            peak_rss_kb=runner.peak_rss_kb,
        )


@dataclass
class BenchResult:
    """One row: the mix drained by ``runners`` runner processes."""

    runners: int
    decisions: int
    statuses: Counter[str]  # how the runs ended (or where they stopped)
    seconds: float
    steps: int
    forward_steps: int
    commits: int  # pg_stat_database, during the drain
    wake_ms: list[float]
    raw_tps: float | None
    reports: list[RunnerReport]
    platform_calls: int | None = None  # HTTP requests the platforms received while draining
    engine: str = Engine.BUILTIN
    server_cpu_seconds: float | None = None  # the Temporal dev server's, while draining

    @property
    def ended(self) -> int:
        return sum(n for status, n in self.statuses.items() if status in TERMINAL_STATUSES)

    @property
    def sagas_per_second(self) -> float:
        return _ratio(self.decisions, self.seconds)

    @property
    def steps_per_second(self) -> float:
        return _ratio(self.steps, self.seconds)

    @property
    def commits_per_forward_step(self) -> float:
        return _ratio(self.commits, self.forward_steps)

    @property
    def wake_p50_ms(self) -> float:
        return percentile(self.wake_ms, 50)

    @property
    def wake_p99_ms(self) -> float:
        return percentile(self.wake_ms, 99)

    @property
    def ratio(self) -> float:
        return _ratio(self.steps_per_second, self.raw_tps or 0.0)

    def per_forward_step(self, counter: str) -> float | None:
        """Return a runner counter summed over the runner processes, per forward step
        (None: the processes did not count it)."""
        counts = [getattr(r, counter) for r in self.reports]
        if None in counts:
            return None
        return _ratio(sum(counts), self.forward_steps)

    @property
    def runner_cpu_ms_per_forward_step(self) -> float:
        return _ratio(sum(r.cpu_seconds for r in self.reports) * 1000, self.forward_steps)

    @property
    def server_cpu_ms_per_forward_step(self) -> float | None:
        if self.server_cpu_seconds is None:
            return None
        return _ratio(self.server_cpu_seconds * 1000, self.forward_steps)

    @property
    def platform_calls_per_forward_step(self) -> float | None:
        if self.platform_calls is None:
            return None
        return _ratio(self.platform_calls, self.forward_steps)

    @property
    def peak_rss_mb(self) -> list[float]:
        return [r.peak_rss_kb / 1024 for r in self.reports]


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return math.nan
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]
