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
    ticks = list(ticks)
    lanes = list(dict.fromkeys(m.platform for m in marks))
    moments = [m.at for m in marks] + [t.at for t in ticks if t.platform in lanes]
    start, end = min(moments), max(moments)
    span = (end - start).total_seconds() or 1.0
    usable = WIDTH - LEFT - RIGHT
    height = TOP + LANE * len(lanes) + 24

    def x(at: datetime) -> float:
        return LEFT + usable * (at - start).total_seconds() / span

    def y(platform: str) -> float:
        return TOP + LANE * lanes.index(platform) + LANE / 2

    where = {m.mutation_id: (x(m.at), y(m.platform)) for m in marks}
    parts = [
        f'<svg class="timeline-svg" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="tl-title tl-desc" xmlns="http://www.w3.org/2000/svg">',
        '<title id="tl-title">Timeline of the mutations by platform</title>',
        f'<desc id="tl-desc">{len(marks)} mutation(s) on {len(lanes)} platform lane(s), '
        f"from {start:%H:%M:%S} to {end:%H:%M:%S} UTC; arrows link each compensation to the "
        "change it reverses.</desc>",
        '<defs><marker id="tl-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="tl-arrowhead"/></marker></defs>',
    ]
    for platform in lanes:
        lane_y = y(platform)
        parts.append(
            f'<g class="tl-lane"><text x="8" y="{lane_y + 4:.1f}">{escape(platform)}</text>'
            f'<line x1="{LEFT}" y1="{lane_y:.1f}" x2="{WIDTH - RIGHT}" y2="{lane_y:.1f}"/></g>'
        )
    for tick in ticks:
        if tick.platform in lanes:
            tx, ty = x(tick.at), y(tick.platform)
            parts.append(
                f'<line class="tl-retry" x1="{tx:.1f}" y1="{ty - 12:.1f}" x2="{tx:.1f}" '
                f'y2="{ty - 4:.1f}"><title>{escape(tick.label)}</title></line>'
            )
    for mark in marks:
        if mark.reverses in where:
            (x1, y1), (x2, y2) = where[mark.mutation_id], where[mark.reverses]
            bend = min(y1, y2) - LANE * 0.45  # arc over the lanes, back to the original
            parts.append(
                f'<path class="tl-undo" data-from="{mark.mutation_id}" data-to="{mark.reverses}" '
                f'd="M{x1:.1f},{y1 - MARK_RADIUS:.1f} Q{(x1 + x2) / 2:.1f},{bend:.1f} '
                f'{x2 + 2:.1f},{y2 - MARK_RADIUS - 1:.1f}" marker-end="url(#tl-arrow)"/>'
            )
    for mark in marks:
        mx, my = where[mark.mutation_id]
        parts.append(
            f'<a href="#{mark.mutation_id}"><circle class="tl-mark tl-{escape(mark.status)}" '
            f'data-mutation="{mark.mutation_id}" cx="{mx:.1f}" cy="{my:.1f}" r="{MARK_RADIUS}">'
            f"<title>{escape(mark.label)}</title></circle></a>"
        )
    axis_y = TOP + LANE * len(lanes) + 14
    parts.append(
        f'<text class="tl-axis" x="{LEFT}" y="{axis_y}">{_clock(start)}</text>'
        f'<text class="tl-axis" x="{WIDTH - RIGHT}" y="{axis_y}" text-anchor="end">'
        f"{_clock(end)}</text></svg>"
    )
    return mark_safe("".join(parts))


def _clock(moment: datetime) -> str:
    return f"{moment:%H:%M:%S}.{moment.microsecond // 1000:03d}Z"
