"""The benchmark's tables: one row per runner count, columns two spaces apart."""

from __future__ import annotations

import math
from collections.abc import Callable

from controlplane.devtools.bench import BenchResult

Column = tuple[str, Callable[[BenchResult], str]]


def number(value: float | None, digits: int = 0) -> str:
    """Return a figure, or "-" for one not measured."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


THROUGHPUT: list[Column] = [
    ("runners", lambda r: str(r.runners)),
    ("sagas", lambda r: str(r.decisions)),
    ("ended", lambda r: str(r.ended)),
    ("completed", lambda r: str(r.statuses["completed"])),
    ("compensated", lambda r: str(r.statuses["compensated"])),
    ("drain s", lambda r: number(r.seconds, 2)),
    ("sagas/s", lambda r: number(r.sagas_per_second)),
    ("steps/s", lambda r: number(r.steps_per_second)),
    ("db commits/fwd step", lambda r: number(r.commits_per_forward_step, 2)),
    ("wake p50 ms", lambda r: number(r.wake_p50_ms, 1)),
    ("wake p99 ms", lambda r: number(r.wake_p99_ms, 1)),
    ("raw TPS", lambda r: number(r.raw_tps)),
    ("steps/s : raw", lambda r: "-" if math.isnan(r.ratio) else f"{r.ratio:.0%}"),
]

PER_FORWARD_STEP: list[Column] = [
    ("runners", lambda r: str(r.runners)),
    ("fwd steps", lambda r: str(r.forward_steps)),
    ("all steps", lambda r: str(r.steps)),
    ("SQL", lambda r: number(r.per_forward_step("statements"), 1)),
    ("round trips", lambda r: number(r.per_forward_step("round_trips"), 1)),
    ("commits", lambda r: number(r.per_forward_step("commits"), 2)),
    ("CPU ms", lambda r: number(r.per_forward_step("cpu_seconds") * 1000, 2)),
    ("HTTP calls", lambda r: number(r.platform_calls_per_forward_step, 2)),
    ("peak RSS MB", lambda r: " ".join(f"{mb:.0f}" for mb in r.peak_rss_mb)),
]


def table(columns: list[Column], rows: list[BenchResult]) -> list[str]:
    """Return a header line and a line per row, each column right-aligned."""
    cells = [[header for header, _ in columns]]
    cells += [[cell(row) for _, cell in columns] for row in rows]
    widths = [max(len(line[n]) for line in cells) for n in range(len(columns))]
    return ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in cells]


def report(label: str, decisions: int, rows: list[BenchResult]) -> str:
    """Return what ``manage.py bench`` prints."""
    lines = [
        f"{decisions} decisions per row (70% complete, 30% fail on their last step and "
        f"compensate), on {label}",
        "",
        *table(THROUGHPUT, rows),
        "",
        "per forward step, counted inside the runner processes (peak RSS: each runner):",
        *table(PER_FORWARD_STEP, rows),
    ]
    return "\n".join(lines)
