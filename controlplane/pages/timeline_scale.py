"""The drawn timeline's time axis: x proportional to time, with ticks at round steps.

One wait may be shortened: a run held for an approver waits minutes or days before steps
that take milliseconds, and drawn to scale those steps would vanish. When the approval
wait is most of the span it is drawn as a break of fixed width, and the clock after it
counts from the approval.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property

BREAK_WIDTH = 72.0  # px of a shortened wait
BREAK_SHARE = 0.4  # a wait longer than this share of the span is shortened
TARGET_TICKS = 8
MIN_TICK_GAP = 52.0  # px between two tick labels
# Round steps of the axis, in seconds.
STEPS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5,
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800,
    3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800,
)  # fmt: skip


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class TimeScale:
    """Where a moment falls across the drawing, between ``x0`` and ``x1``."""

    start: datetime
    end: datetime
    x0: float
    x1: float
    gap: tuple[datetime, datetime] | None = None  # the shortened wait

    @classmethod
    def fit(
        cls,
        start: datetime,
        end: datetime,
        x0: float,
        x1: float,
        *,
        wait: tuple[datetime, datetime] | None = None,
    ) -> TimeScale:
        """Return the scale of ``start``..``end``, shortening ``wait`` when it is most of it."""
        end = max(end, start)
        total = (end - start).total_seconds()
        gap = None
        if wait is not None and total > 0 and x1 - x0 > 3 * BREAK_WIDTH:
            begin, until = max(wait[0], start), min(wait[1], end)
            if (until - begin).total_seconds() > BREAK_SHARE * total:
                gap = (begin, until)
        return cls(start, end, x0, x1, gap)

    @cached_property
    def drawn_seconds(self) -> float:
        """Return the seconds drawn to scale (all but the shortened wait)."""
        total = (self.end - self.start).total_seconds()
        if self.gap is not None:
            total -= (self.gap[1] - self.gap[0]).total_seconds()
        return total

    @cached_property
    def px_per_second(self) -> float:
        width = self.x1 - self.x0 - (BREAK_WIDTH if self.gap else 0.0)
        return width / (self.drawn_seconds or 1.0)

    def x(self, at: datetime) -> float:
        moment = min(max(at, self.start), self.end)
        if self.gap is None:
            return self.x0 + (moment - self.start).total_seconds() * self.px_per_second
        begin, until = self.gap
        before = (begin - self.start).total_seconds() * self.px_per_second
        if moment <= begin:
            return self.x0 + (moment - self.start).total_seconds() * self.px_per_second
        if moment >= until:
            after = (moment - until).total_seconds() * self.px_per_second
            return self.x0 + before + BREAK_WIDTH + after
        share = (moment - begin) / (until - begin)
        return self.x0 + before + BREAK_WIDTH * share

    def ticks(self, *, restart: str = "+0") -> list[Tick]:
        """Return ticks at round steps: from the start, and after a shortened wait from its
        end (its first tick labelled ``restart``, the others "+" their offset from it),
        never two labels closer than MIN_TICK_GAP."""
        step = nice_step(self.drawn_seconds / TARGET_TICKS)
        segments = [(self.start, self.end, "")]
        if self.gap is not None:
            segments = [(self.start, self.gap[0], ""), (self.gap[1], self.end, "+")]
        ticks: list[Tick] = []
        for origin, until, sign in segments:
            n = 0
            while (moment := origin + timedelta(seconds=n * step)) <= until:
                x = self.x(moment)
                label = restart if sign and n == 0 else sign + offset_label(n * step, step)
                if not ticks or x - ticks[-1].x >= MIN_TICK_GAP:
                    ticks.append(Tick(x, label))
                n += 1
        return ticks


def nice_step(seconds: float) -> float:
    """Return the smallest round step at least ``seconds`` long."""
    return next((s for s in STEPS if s >= seconds), STEPS[-1])


def offset_label(seconds: float, step: float) -> str:
    """Return a tick's offset in the unit its step suits: 250 ms, 1.5 s, 2 min, 3 h."""
    if seconds == 0:
        return "0"
    if step < 1:
        if seconds < 1:
            return f"{round(seconds * 1000)} ms"
        decimals = 1 if step >= 0.1 else 2 if step >= 0.01 else 3
        return f"{seconds:.{decimals}f} s"
    if step < 60:
        return f"{seconds:g} s" if seconds < 60 else _minutes(seconds)
    if step < 3600:
        return _minutes(seconds)
    if step < 86400:
        return f"{seconds / 3600:g} h"
    return f"{seconds / 86400:g} d"


def _minutes(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min" + (f" {rest} s" if rest else "")
