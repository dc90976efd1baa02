"""The drawn timeline: one lane per platform, time across, a mark per mutation coloured by
status, an arrow from each compensation back to the change it reverses, retries as ticks.

Built as a string: a decision can have a thousand mutations and this stays cheap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH = 960
LEFT = 96  # room for the lane labels
RIGHT = 24
TOP = 28
LANE = 56
MARK_RADIUS = 7


@dataclass(frozen=True)
class Mark:
    mutation_id: str
    number: int
    platform: str
    status: str
    at: datetime
    label: str
    reverses: str | None = None  # mutation_id of the original


@dataclass(frozen=True)
class Tick:
    platform: str
    at: datetime
    label: str


def draw(marks: list[Mark], ticks: Iterable[Tick]) -> SafeString:
    if not marks:
        return mark_safe("")
    lanes = list(dict.fromkeys(m.platform for m in marks))
    ticks = [t for t in ticks if t.platform in lanes]
    moments = [m.at for m in marks] + [t.at for t in ticks]
    scale = _Scale(lanes=lanes, start=min(moments), end=max(moments))
    where = {m.mutation_id: (scale.x(m.at), scale.y(m.platform)) for m in marks}
    parts = [_head(scale, len(marks))]
    parts += [_lane(scale, platform) for platform in lanes]
    parts += [_retry(scale, tick) for tick in ticks]
    parts += [_undo_arrow(mark, where) for mark in marks if mark.reverses in where]
    parts += [_mark(mark, where) for mark in marks]
    parts.append(_axis(scale))
    return mark_safe("".join(parts))


@dataclass(frozen=True)
class _Scale:
    """Where a moment falls across the drawing, and where a platform's lane runs."""

    lanes: list[str]
    start: datetime
    end: datetime

    @property
    def height(self) -> int:
        return TOP + LANE * len(self.lanes) + 24

    def x(self, at: datetime) -> float:
        span = (self.end - self.start).total_seconds() or 1.0
        return LEFT + (WIDTH - LEFT - RIGHT) * (at - self.start).total_seconds() / span

    def y(self, platform: str) -> float:
        return TOP + LANE * self.lanes.index(platform) + LANE / 2


def _head(scale: _Scale, count: int) -> str:
    return (
        f'<svg class="timeline-svg" viewBox="0 0 {WIDTH} {scale.height}" role="img" '
        f'aria-labelledby="tl-title tl-desc" xmlns="http://www.w3.org/2000/svg">'
        '<title id="tl-title">Timeline of the mutations by platform</title>'
        f'<desc id="tl-desc">{count} mutation(s) on {len(scale.lanes)} platform lane(s), '
        f"from {scale.start:%H:%M:%S} to {scale.end:%H:%M:%S} UTC; arrows link each "
        "compensation to the change it reverses.</desc>"
        '<defs><marker id="tl-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="tl-arrowhead"/></marker></defs>'
    )


def _lane(scale: _Scale, platform: str) -> str:
    lane_y = scale.y(platform)
    return (
        f'<g class="tl-lane"><text x="8" y="{lane_y + 4:.1f}">{escape(platform)}</text>'
        f'<line x1="{LEFT}" y1="{lane_y:.1f}" x2="{WIDTH - RIGHT}" y2="{lane_y:.1f}"/></g>'
    )


def _retry(scale: _Scale, tick: Tick) -> str:
    tx, ty = scale.x(tick.at), scale.y(tick.platform)
    return (
        f'<line class="tl-retry" x1="{tx:.1f}" y1="{ty - 12:.1f}" x2="{tx:.1f}" '
        f'y2="{ty - 4:.1f}"><title>{escape(tick.label)}</title></line>'
    )


def _undo_arrow(mark: Mark, where: dict[str, tuple[float, float]]) -> str:
    """An arc over the lanes from a compensation back to the change it reverses."""
    (x1, y1), (x2, y2) = where[mark.mutation_id], where[mark.reverses or ""]
    bend = min(y1, y2) - LANE * 0.45
    return (
        f'<path class="tl-undo" data-from="{mark.mutation_id}" data-to="{mark.reverses}" '
        f'd="M{x1:.1f},{y1 - MARK_RADIUS:.1f} Q{(x1 + x2) / 2:.1f},{bend:.1f} '
        f'{x2 + 2:.1f},{y2 - MARK_RADIUS - 1:.1f}" marker-end="url(#tl-arrow)"/>'
    )


def _mark(mark: Mark, where: dict[str, tuple[float, float]]) -> str:
    mx, my = where[mark.mutation_id]
    return (
        f'<a href="#{mark.mutation_id}"><circle class="tl-mark tl-{escape(mark.status)}" '
        f'data-mutation="{mark.mutation_id}" cx="{mx:.1f}" cy="{my:.1f}" r="{MARK_RADIUS}">'
        f"<title>{escape(mark.label)}</title></circle></a>"
    )


def _axis(scale: _Scale) -> str:
    axis_y = TOP + LANE * len(scale.lanes) + 14
    return (
        f'<text class="tl-axis" x="{LEFT}" y="{axis_y}">{_clock(scale.start)}</text>'
        f'<text class="tl-axis" x="{WIDTH - RIGHT}" y="{axis_y}" text-anchor="end">'
        f"{_clock(scale.end)}</text></svg>"
    )


def _clock(moment: datetime) -> str:
    return f"{moment:%H:%M:%S}.{moment.microsecond // 1000:03d}Z"
