"""The benchmark's tables: one row per engine and runner count, columns two spaces apart."""

from __future__ import annotations

import math
from collections.abc import Callable

from controlplane.devtools.bench_results import BenchResult
from runs.models import Engine

Column = tuple[str, Callable[[BenchResult], str]]


def number(value: float | None, digits: int = 0) -> str:
    """Return a figure, or "-" for one not measured."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def counted(value: float | None, digits: int) -> str:
    """Return a figure the engine's processes count, or "n/a" for one they do not."""
    return "n/a" if value is None else number(value, digits)


THROUGHPUT: list[Column] = [
    ("runners", lambda r: str(r.runners)),
    ("engine", lambda r: r.engine),
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
    ("engine", lambda r: r.engine),
    ("fwd steps", lambda r: str(r.forward_steps)),
    ("all steps", lambda r: str(r.steps)),
    ("SQL", lambda r: counted(r.per_forward_step("statements"), 1)),
    ("round trips", lambda r: counted(r.per_forward_step("round_trips"), 1)),
    ("commits", lambda r: counted(r.per_forward_step("commits"), 2)),
    ("CPU ms", lambda r: number(r.runner_cpu_ms_per_forward_step, 2)),
    ("server CPU ms", lambda r: server_cpu(r)),
    ("HTTP calls", lambda r: number(r.platform_calls_per_forward_step, 2)),
    ("peak RSS MB", lambda r: " ".join(f"{mb:.0f}" for mb in r.peak_rss_mb)),
]


def server_cpu(row: BenchResult) -> str:
    """Return the Temporal server's CPU per forward step: "n/a" for the built-in engine
    (it has none), "-" for a server elsewhere (not measured)."""
    if row.engine == Engine.BUILTIN:
        return "n/a"
    return number(row.server_cpu_ms_per_forward_step, 2)


def table(columns: list[Column], rows: list[BenchResult]) -> list[str]:
    """Return a header line and a line per row, each column right-aligned."""
    cells = [[header for header, _ in columns]]
    cells += [[cell(row) for _, cell in columns] for row in rows]
    widths = [max(len(line[n]) for line in cells) for n in range(len(columns))]
    return ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in cells]


def report(label: str, decisions: int, rows: list[BenchResult], temporal: str = "") -> str:
    """Return what ``manage.py bench`` prints; ``temporal`` names the Temporal rows' server."""
    lines = [
        f"{decisions} decisions per row (70% complete, 30% fail on their last step and "
        f"compensate), on {label}",
        *(
            [f"temporal rows: runworkflows --engine temporal workers on {temporal}"]
            if temporal
            else []
        ),
        "",
        *table(THROUGHPUT, rows),
        "",
        "per forward step, counted inside the runner processes (peak RSS: each runner; "
        "server CPU: the Temporal server's):",
        *table(PER_FORWARD_STEP, rows),
    ]
    if any(r.per_forward_step("statements") is None for r in rows):
        lines += [
            "",
            "n/a: not counted by the engine's workers (CPU and peak RSS read by the bench "
            "from the exited processes)",
        ]
    return "\n".join(lines)
