"""The overview's chart: decisions per hour by policy outcome, as stacked bars in SVG.

Drawn on the server as a string (no charting library); colours come from the stylesheet's
tokens through classes, so the chart follows the light or dark theme.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from controlplane.pages.overview_data import HourCount

WIDTH = 720
HEIGHT = 200
LEFT = 48  # room for the count labels
RIGHT = 8
TOP = 12
BOTTOM = 28  # room for the hour labels
BAR = 0.7  # share of an hour's slot its bar fills
LABEL_EVERY = 3  # hours between two hour labels
# Bottom to top, with the words the legend, tooltips and description use.
SERIES = (("allow", "allowed"), ("require_human", "needing approval"), ("deny", "denied"))


def draw(hours: Sequence[HourCount]) -> SafeString:
    """Return the SVG of ``hours`` (oldest first): one stacked bar per hour, a count axis
    and hour labels, with a title and a description for assistive technologies."""
    if not hours:
        return mark_safe("")
    top = nice_ceiling(max(h.total for h in hours))
    slot = (WIDTH - LEFT - RIGHT) / len(hours)
    parts = [_head(hours), *_grid(top)]
    for n, hour in enumerate(hours):
        parts.append(
            _bar(hour, x=LEFT + slot * n + slot * (1 - BAR) / 2, width=slot * BAR, top=top)
        )
        if n % LABEL_EVERY == 0 or n == len(hours) - 1:
            parts.append(
                f'<text class="ov-axis" x="{LEFT + slot * (n + 0.5):.1f}" y="{HEIGHT - 8}" '
                f'text-anchor="middle">{hour.start:%H:%M}</text>'
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def nice_ceiling(value: int) -> int:
    """Return the smallest 2, 5 or 10 times a power of ten that is at least ``value``, so
    that the axis ends on a round number."""
    scale = 1
    while True:
        for step in (2, 5, 10):
            if step * scale >= value:
                return step * scale
        scale *= 10


def _plot_height() -> int:
    return HEIGHT - TOP - BOTTOM


def _head(hours: Sequence[HourCount]) -> str:
    totals = {key: sum(getattr(h, key) for h in hours) for key, _ in SERIES}
    counted = ", ".join(f"{totals[key]:,} {words}" for key, words in SERIES)
    busiest = max(hours, key=lambda h: h.total)
    peak = (
        f" The busiest hour began at {busiest.start:%H:%M} UTC, with {busiest.total:,}."
        if busiest.total
        else ""
    )
    return (
        f'<svg class="ov-chart-svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        'aria-labelledby="ov-chart-title ov-chart-desc" xmlns="http://www.w3.org/2000/svg">'
        '<title id="ov-chart-title">Decisions per hour by policy outcome</title>'
        f'<desc id="ov-chart-desc">{len(hours)} hours from {hours[0].start:%H:%M} UTC to now: '
        f"{counted}.{peak}</desc>"
    )


def _grid(top: int) -> list[str]:
    """Horizontal lines at zero, half and the top of the scale, each with its count."""
    lines = []
    for value in (0, top // 2, top):
        y = TOP + _plot_height() * (1 - value / top)
        lines.append(
            f'<line class="ov-grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>'
            f'<text class="ov-axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{value:,}</text>"
        )
    return lines


def _bar(hour: HourCount, *, x: float, width: float, top: int) -> str:
    """One hour's stacked bar; hovering its column tells its counts."""
    tip = f"{hour.start:%H:%M} UTC: " + ", ".join(
        f"{getattr(hour, key):,} {words}" for key, words in SERIES
    )
    parts = [
        f'<g class="ov-hour" data-hour="{hour.start:%H:%M}"><title>{escape(tip)}</title>'
        # The whole column takes the pointer, so a short or empty bar still shows its tip.
        f'<rect class="ov-slot" x="{x:.1f}" y="{TOP}" width="{width:.1f}" '
        f'height="{_plot_height()}"/>'
    ]
    base = TOP + _plot_height()
    for key, _ in SERIES:
        count = getattr(hour, key)
        if not count:
            continue
        height = _plot_height() * count / top
        base -= height
        parts.append(
            f'<rect class="ov-bar ov-{key}" data-count="{count}" x="{x:.1f}" y="{base:.1f}" '
            f'width="{width:.1f}" height="{height:.1f}"/>'
        )
    parts.append("</g>")
    return "".join(parts)
