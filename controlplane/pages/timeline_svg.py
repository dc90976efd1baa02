"""The drawn timeline of a run: a lane per step and per compensation, time across, a bar
per attempt from its start to its end coloured by outcome, the waits between attempts as
dashed lines, an arrow from each compensation to the step it reverses, and the approval
wait as a labelled gap.

Every bar is focusable and named (its error included), and shows its details in the strip
under the axis on hover and focus; the page has the same attempts as a table. A run with
too many attempts to draw one by one is drawn as counts per slice of time instead
(``controlplane.pages.timeline_counts``). Built as a string: this stays cheap for thousands
of attempts.
"""

from __future__ import annotations

from datetime import datetime
from functools import cached_property

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from controlplane.pages.attempts import COMPENSATION, SKIPPED, AttemptView, Lane
from controlplane.pages.timeline_scale import BREAK_WIDTH, TimeScale
from controlplane.pages.timeline_track import ApprovalSpan, Track, attempt_label
from controlplane.templatetags.backstop import duration

WIDTH = 960
LABEL_WIDTH = 190  # room for the lane labels
RIGHT = 24
TOP = 8
LANE = 30
BAR = 14
AXIS = 30
TIP = 40  # two lines of details under the axis
MIN_BAR = 3.0  # px: an attempt of a millisecond stays visible
HIT_MARGIN = 4.0  # px around a bar that still points at it
LABEL_CHARS = 26
TIP_LINE = 120  # characters of a line of details
TIP_X = 12


def draw(track: Track) -> SafeString:
    """Return the SVG of one run, a bar per attempt (see ``Track.too_many``)."""
    if not track.attempts and track.approval is None:
        return mark_safe("")
    lanes = ([_APPROVAL_LANE] if track.approval else []) + [lane.key for lane in track.lanes]
    scale = _scale(track)
    canvas = Canvas(track, lanes, scale)
    parts = [canvas.head(_description(track)), canvas.grid(), canvas.started()]
    parts += [canvas.lane_label(lane) for lane in track.lanes]
    if track.approval is not None:
        parts.append(canvas.approval(track.approval))
    parts += canvas.waits()
    parts += canvas.arrows()
    parts += [canvas.bar(n, attempt) for n, attempt in enumerate(track.attempts)]
    parts.append(canvas.axis())
    return mark_safe("".join(parts))


_APPROVAL_LANE = "approval"


def _scale(track: Track) -> TimeScale:
    """Return the time axis of a run, shortening its wait to start (for an approver, or
    for a runner) when that wait is most of its life: the steps stay readable."""
    ends = [a.finished_at for a in track.attempts] + [
        lane.next_attempt_at for lane in track.lanes if lane.next_attempt_at
    ]
    end = max([track.end, *ends])
    return TimeScale.fit(track.start, end, LABEL_WIDTH, WIDTH - RIGHT, wait=track.wait)


def _description(track: Track) -> str:
    steps = sum(lane.kind != COMPENSATION for lane in track.lanes)
    undo = len(track.lanes) - steps
    text = (
        f"{len(track.attempts)} attempt(s) of {steps} step(s) and {undo} compensation(s) "
        f"over {duration(track.end - track.start) or '0 ms'}; bars from start to end, "
        "dashed lines for the waits between attempts, arrows from each compensation to "
        "the step it reverses."
    )
    if track.approval is not None:
        text += f" Approval: {track.approval.words}."
    return text


class Canvas:
    """The drawing's geometry and its parts, each returned as SVG text."""

    def __init__(self, track: Track, lanes: list[str], scale: TimeScale) -> None:
        self.track, self.lanes, self.scale = track, lanes, scale
        self.id = track.dom_id
        self.height = TOP + LANE * len(lanes) + AXIS + TIP

    @cached_property
    def room(self) -> dict[int, float]:
        """Return where the next attempt of each attempt's lane starts: a bar widened to
        stay visible stops there, so that no two bars of a lane overlap."""
        room: dict[int, float] = {}
        following: dict[str, float] = {}
        for n in range(len(self.track.attempts) - 1, -1, -1):
            attempt = self.track.attempts[n]
            room[n] = following.get(attempt.lane, WIDTH - 4)
            following[attempt.lane] = self.scale.x(attempt.started_at)
        return room

    def y(self, lane: str) -> float:
        return TOP + LANE * self.lanes.index(lane) + LANE / 2

    @property
    def axis_y(self) -> float:
        return TOP + LANE * len(self.lanes) + 4

    @property
    def tip_y(self) -> float:
        return self.axis_y + AXIS + 8

    def head(self, description: str) -> str:
        return (
            f'<svg class="timeline-svg" id="{self.id}" viewBox="0 0 {WIDTH} {self.height}" '
            f'role="group" aria-labelledby="{self.id}-title {self.id}-desc" '
            'xmlns="http://www.w3.org/2000/svg">'
            f'<title id="{self.id}-title">Timeline of run {self.track.run_id}</title>'
            f'<desc id="{self.id}-desc">{escape(description)}</desc>'
            f'<defs><marker id="{self.id}-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
            'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
            '<path d="M0,0 L10,5 L0,10 z" class="tl-arrowhead"/></marker></defs>'
            f'<text class="tl-tip-default" x="{TIP_X}" y="{self.tip_y:.1f}">'
            "Point at a bar, or Tab to it, for its details.</text>"
        )

    def grid(self) -> str:
        bottom = self.axis_y
        parts = [
            f'<line class="tl-grid" x1="{t.x:.1f}" y1="{TOP}" x2="{t.x:.1f}" y2="{bottom}"/>'
            for t in self.scale.ticks()
        ]
        for n in range(len(self.lanes)):
            if n % 2:
                parts.insert(
                    0,
                    f'<rect class="tl-stripe" x="0" y="{TOP + LANE * n}" width="{WIDTH}" '
                    f'height="{LANE}"/>',
                )
        if self.scale.gap is not None:
            x = self.scale.x(self.scale.gap[0])
            waited = duration(self.scale.gap[1] - self.scale.gap[0])
            parts.append(
                f'<rect class="tl-break" x="{x:.1f}" y="{TOP}" width="{BREAK_WIDTH}" '
                f'height="{bottom - TOP:.1f}"><title>{escape(self.track.wait_words)}: '
                f"{waited}, drawn shortened</title></rect>"
            )
        return "".join(parts)

    def started(self) -> str:
        """A line where the run started running: after a claim, or after its approval."""
        started = self.track.started_at
        if started is None:
            return ""
        x = self.scale.x(started)
        at = duration(started - self.track.start) or "0 ms"
        return (
            f'<line class="tl-start" x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{self.axis_y}">'
            f"<title>run started +{at}</title></line>"
        )

    def lane_label(self, lane: Lane) -> str:
        y = self.y(lane.key)
        name = ("\u21a9 " if lane.kind == COMPENSATION else "") + lane.name
        shown = name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 1] + "\u2026"
        platform = f" ({lane.platform})" if lane.platform else ""
        return (
            f'<text class="tl-lane-label" x="{LABEL_WIDTH - 10}" y="{y + 4:.1f}" '
            f'text-anchor="end"><title>{escape(name + platform)}</title>{escape(shown)}</text>'
        )

    def approval(self, approval: ApprovalSpan) -> str:
        y = self.y(_APPROVAL_LANE)
        x1 = self.scale.x(approval.requested_at)
        x2 = self.scale.x(approval.decided_at or self.track.end)
        waited = duration((approval.decided_at or self.track.end) - approval.requested_at)
        text = f"{approval.words} after {waited or '0 ms'}"
        label = f"Approval: {text}"
        anchor, tx = ("end", x1 - 6) if x2 + 8 + 7 * len(text) > WIDTH else ("start", x2 + 6)
        return (
            f'<text class="tl-lane-label" x="{LABEL_WIDTH - 10}" y="{y + 4:.1f}" '
            'text-anchor="end">approval</text>'
            f'<g class="tl-bar tl-approval" id="{self.id}-approval" tabindex="0" role="img" '
            f'aria-label="{escape(label)}"><title>{escape(label)}</title>'
            f'<rect x="{x1:.1f}" y="{y - BAR / 2:.1f}" width="{max(x2 - x1, MIN_BAR):.1f}" '
            f'height="{BAR}" rx="2"/>{self._tip(label)}</g>'
            f'<text class="tl-approval-label" x="{tx:.1f}" y="{y + 4:.1f}" '
            f'text-anchor="{anchor}">{escape(text)}</text>'
        )

    def waits(self) -> list[str]:
        """Dashed lines between consecutive attempts of a lane, and to a retry not yet made."""
        parts = []
        last: dict[str, AttemptView] = {}
        for attempt in self.track.attempts:
            before = last.get(attempt.lane)
            last[attempt.lane] = attempt
            if before is None:
                continue
            waited = duration(attempt.started_at - before.finished_at) or "0 ms"
            parts.append(
                self._wait(
                    attempt.lane,
                    before.finished_at,
                    attempt.started_at,
                    f"waited {waited} before attempt {attempt.number}",
                )
            )
        for lane in self.track.lanes:
            if lane.next_attempt_at is not None and lane.key in last:
                parts.append(
                    self._wait(
                        lane.key,
                        last[lane.key].finished_at,
                        lane.next_attempt_at,
                        f"next attempt of {lane.name} due "
                        f"+{duration(lane.next_attempt_at - self.track.start)}",
                        extra=" tl-next",
                    )
                )
        return parts

    def _wait(
        self, lane: str, begin: datetime, until: datetime, label: str, extra: str = ""
    ) -> str:
        y = self.y(lane)
        return (
            f'<line class="tl-retry{extra}" x1="{self.scale.x(begin):.1f}" y1="{y:.1f}" '
            f'x2="{self.scale.x(until):.1f}" y2="{y:.1f}"><title>{escape(label)}</title></line>'
        )

    def arrows(self) -> list[str]:
        """An arrow from each compensation's last attempt to the attempt it reverses."""
        applied = {a.mutation_id: a for a in self.track.attempts if a.mutation_id}
        last: dict[str, AttemptView] = {}
        for attempt in self.track.attempts:
            if attempt.is_compensation and attempt.compensates_id in applied:
                last[attempt.lane] = attempt
        parts = []
        for undo in last.values():
            done = applied[undo.compensates_id or ""]
            x1, y1 = self.scale.x(undo.started_at), self.y(undo.lane)
            x2 = self.scale.x(done.started_at) + self._width(done)
            y2 = self.y(done.lane) + BAR / 2
            bend = max(x1 - x2, 40.0) / 2
            failed = " tl-undo-failed" if undo.outcome != "succeeded" else ""
            parts.append(
                f'<path class="tl-undo{failed}" data-from="{undo.mutation_id or ""}" '
                f'data-to="{done.mutation_id}" d="M{x1:.1f},{y1:.1f} C{x1 - bend:.1f},{y1:.1f} '
                f'{x2 + bend / 4:.1f},{y2 + LANE / 2:.1f} {x2:.1f},{y2 + 1:.1f}" '
                f'marker-end="url(#{self.id}-arrow)"/>'
            )
        return parts

    def _width(self, attempt: AttemptView, n: int | None = None) -> float:
        start = self.scale.x(attempt.started_at)
        span = self.scale.x(attempt.finished_at) - start
        room = self.room.get(n, WIDTH - 4) - start - 1 if n is not None else MIN_BAR
        return max(span, min(MIN_BAR, room), 1.0)

    def bar(self, n: int, attempt: AttemptView) -> str:
        label = attempt_label(attempt, self.track.start)
        x, y = self.scale.x(attempt.started_at), self.y(attempt.lane)
        comp = " tl-comp" if attempt.is_compensation else ""
        if attempt.outcome == SKIPPED:
            shape = f'<path d="M{x:.1f},{y - 7:.1f} l7,7 l-7,7 l-7,-7 z"/>'  # a diamond: no call
        else:
            shape = (
                f'<rect x="{x:.1f}" y="{y - BAR / 2:.1f}" width="{self._width(attempt, n):.1f}" '
                f'height="{BAR}" rx="2"/>'
            )
        mutation = f' data-mutation="{attempt.mutation_id}"' if attempt.mutation_id else ""
        # A bar of a millisecond is a few pixels wide: an invisible margin makes it easy
        # to point at.
        hit = (
            f'<rect class="tl-hit" x="{x - HIT_MARGIN:.1f}" y="{y - LANE / 2 + 2:.1f}" '
            f'width="{self._width(attempt, n) + 2 * HIT_MARGIN:.1f}" height="{LANE - 4}"/>'
        )
        return (
            f'<g class="tl-bar tl-{attempt.outcome}{comp}" id="{self.id}-a{n}" tabindex="0" '
            f'role="img" aria-label="{escape(label)}"{mutation}>'
            f"<title>{escape(label)}</title>{shape}{hit}{self._tip(label)}</g>"
        )

    def _tip(self, label: str) -> str:
        """Return a bar's details for the strip under the axis, on two lines at most."""
        first, rest = _split(label, TIP_LINE)
        second, left = _split(rest, TIP_LINE)
        if left:
            second = second[: TIP_LINE - 1] + "\u2026"
        lines = f'<tspan x="{TIP_X}" dy="0">{escape(first)}</tspan>'
        if second:
            lines += f'<tspan x="{TIP_X}" dy="15">{escape(second)}</tspan>'
        return f'<text class="tl-tip" aria-hidden="true" y="{self.tip_y:.1f}">{lines}</text>'

    def axis(self) -> str:
        y = self.axis_y
        parts = [
            f'<line class="tl-axis-line" x1="{LABEL_WIDTH}" y1="{y}" x2="{WIDTH - RIGHT}" '
            f'y2="{y}"/>'
        ]
        restart = self.track.restart_label
        for tick in self.scale.ticks(restart=restart):
            parts.append(
                f'<text class="tl-axis" x="{tick.x:.1f}" y="{y + 16}" text-anchor="middle">'
                f"{escape(tick.label)}</text>"
            )
        if self.scale.gap is not None:  # the axis broken where the wait is shortened
            x = self.scale.x(self.scale.gap[0])
            parts.append(
                f'<path class="tl-axis-break" d="M{x + 2:.1f},{y + 6} l6,-12 '
                f'M{x + BREAK_WIDTH - 8:.1f},{y + 6} l6,-12"/>'
            )
        parts.append(f'<text class="tl-axis" x="8" y="{y + 16}">time since created</text></svg>')
        return "".join(parts)


def _split(text: str, width: int) -> tuple[str, str]:
    """Return the first line of ``text`` (cut at a space when it can be) and the rest."""
    if len(text) <= width:
        return text, ""
    cut = text.rfind(" ", 0, width)
    cut = cut if cut > width // 2 else width
    return text[:cut], text[cut:].lstrip()
