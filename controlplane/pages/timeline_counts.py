"""The drawn timeline of a run with too many attempts to draw one by one: a lane for the
forward steps and one for the compensations, time across in slices, and in each slice a
column of the attempts that began in it, stacked by outcome. Each column is focusable and
says its counts; the table under the drawing lists the attempts themselves."""

from __future__ import annotations

from collections import Counter

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from controlplane.pages.attempts import COMPENSATION, FORWARD, AttemptView
from controlplane.pages.timeline_scale import TimeScale
from controlplane.pages.timeline_svg import LABEL_WIDTH, LANE, RIGHT, WIDTH, Canvas, _scale
from controlplane.pages.timeline_track import OUTCOME_WORDS, Track
from controlplane.templatetags.backstop import duration

SLICES = 60
COLUMN_LANE = 2 * LANE  # taller lanes: the columns' heights say the counts
OUTCOMES = ("succeeded", "retried", "failed", "skipped")
LANE_NAMES: dict[str, str] = {FORWARD: "forward steps", COMPENSATION: "compensations"}


def draw_counts(track: Track) -> SafeString:
    scale = _scale(track)
    kinds = [str(k) for k in (FORWARD, COMPENSATION) if any(a.kind == k for a in track.attempts)]
    width = (scale.x1 - scale.x0) / SLICES
    slices: dict[tuple[str, int], list[AttemptView]] = {}
    for attempt in track.attempts:
        n = min(int((scale.x(attempt.started_at) - scale.x0) / width), SLICES - 1)
        slices.setdefault((attempt.kind, n), []).append(attempt)
    tallest = max(len(found) for found in slices.values())
    canvas = _CountsCanvas(track, kinds, scale)
    steps = len({a.lane for a in track.attempts if a.kind == FORWARD})
    undo = len({a.lane for a in track.attempts if a.kind == COMPENSATION})
    description = (
        f"{len(track.attempts):,} attempts of {steps:,} steps and {undo:,} compensations over "
        f"{duration(track.end - track.start) or '0 ms'}: too many to draw one by one, so each "
        f"column counts the attempts that began in its slice of "
        f"{duration(width / scale.px_per_second) or '0 ms'}; the table lists them all."
    )
    parts = [canvas.head(description), canvas.grid()]
    for kind in kinds:
        parts.append(
            f'<text class="tl-lane-label" x="{LABEL_WIDTH - 10}" y="{canvas.y(kind) + 4:.1f}" '
            f'text-anchor="end">{LANE_NAMES[kind]}</text>'
        )
    for (kind, n), found in sorted(slices.items()):
        parts.append(canvas.column(kind, n, found, width, tallest))
    parts.append(canvas.axis())
    return mark_safe("".join(parts))


class _CountsCanvas(Canvas):
    def __init__(self, track: Track, kinds: list[str], scale: TimeScale) -> None:
        super().__init__(track, kinds, scale)
        self.height += (COLUMN_LANE - LANE) * len(kinds)

    def y(self, lane: str) -> float:
        return 8 + COLUMN_LANE * self.lanes.index(lane) + COLUMN_LANE / 2

    @property
    def axis_y(self) -> float:
        return 8 + COLUMN_LANE * len(self.lanes) + 4

    def grid(self) -> str:
        parts = [
            f'<line class="tl-grid" x1="{t.x:.1f}" y1="8" x2="{t.x:.1f}" y2="{self.axis_y}"/>'
            for t in self.scale.ticks()
        ]
        if len(self.lanes) > 1:  # a line between the two lanes
            y = self.y(self.lanes[0]) + COLUMN_LANE / 2
            parts.append(
                f'<line class="tl-grid" x1="{LABEL_WIDTH}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}"/>'
            )
        return "".join(parts)

    def column(
        self, kind: str, n: int, found: list[AttemptView], width: float, tallest: int
    ) -> str:
        counts = Counter(a.outcome for a in found)
        x = self.scale.x0 + n * width
        bottom = self.y(kind) + COLUMN_LANE / 2 - 3
        room = COLUMN_LANE - 8
        rects = []
        for outcome in OUTCOMES:
            if not counts[outcome]:
                continue
            height = max(room * counts[outcome] / tallest, 2.0)
            bottom -= height
            rects.append(
                f'<rect class="tl-count-{outcome}" x="{x + 0.5:.1f}" y="{bottom:.1f}" '
                f'width="{max(width - 1, 1):.1f}" height="{height:.1f}"/>'
            )
        since = found[0].started_at - self.track.start
        told = ", ".join(f"{counts[o]} {OUTCOME_WORDS[o]}" for o in OUTCOMES if counts[o])
        label = (
            f"{LANE_NAMES[kind]}, from +{duration(since) or '0 ms'}: "
            f"{len(found)} attempt(s): {told}"
        )
        return (
            f'<g class="tl-bar tl-column" id="{self.id}-c{kind[0]}{n}" tabindex="0" role="img" '
            f'aria-label="{escape(label)}"><title>{escape(label)}</title>{"".join(rects)}'
            f"{self._tip(label)}</g>"
        )
