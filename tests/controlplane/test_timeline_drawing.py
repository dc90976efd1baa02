"""The drawn timeline: a bar per attempt on a true time axis, readable with 50 attempts,
and counted per slice of time for a decision with a thousand mutations."""

from __future__ import annotations

import dataclasses
import itertools
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client

from controlplane.devtools import sample_data
from controlplane.models import Role, ServiceAccount
from controlplane.pages.attempts import AttemptView, Lane
from controlplane.pages.timeline_scale import MIN_TICK_GAP
from controlplane.pages.timeline_svg import draw
from controlplane.pages.timeline_track import Track
from mutations.models import SandboxFault
from runs.keys import step_calls_prefix
from runs.retry import RetryPolicy
from runs.workflows import registry
from tests.conftest import drain, first_run_key, load_fixture, submit

SVG = "{http://www.w3.org/2000/svg}"
RETRIES = 49


@pytest.fixture
def viewer(client: Client, member: Any) -> Client:
    client.force_login(member("viewer", Role.VIEWER))
    return client


@pytest.fixture
def patient_credit() -> Iterator[None]:
    """The rebalance workflow, in a version whose credit tries 50 times."""
    current = registry.latest_workflow("execute_rebalance_spend")
    assert current is not None
    credit = current.step("credit_target_channel")
    steps = tuple(
        dataclasses.replace(s, retry=RetryPolicy(max_attempts=RETRIES + 1, initial_interval=0.01))
        if s is credit
        else s
        for s in current.steps
    )
    patient = dataclasses.replace(current, version=current.version + 100, steps=steps)
    registry.register(patient)
    yield
    registry.unregister(patient.id, patient.version)


def svg_of(html: str) -> ET.Element:
    text = html.split('<div class="tl-scroll">', 1)[1].split("</svg>", 1)[0] + "</svg>"
    return ET.fromstring(text)


def bars(svg: ET.Element) -> list[ET.Element]:
    return [g for g in svg.iter(f"{SVG}g") if "tl-bar" in g.get("class", "").split()]


def found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in {text!r}"
    return match.group(1)


def axis_labels(svg: ET.Element) -> list[ET.Element]:
    """Return the tick labels of the time axis, left to right."""
    return [
        t
        for t in svg.iter(f"{SVG}text")
        if t.get("class") == "tl-axis" and t.get("text-anchor") == "middle"
    ]


def viewbox(svg: ET.Element) -> tuple[float, float]:
    _, _, width, height = (float(v) for v in svg.get("viewBox", "").split())
    return width, height


@pytest.mark.django_db
def test_a_run_of_fifty_attempts_draws_each_one_readably(
    agent: ServiceAccount, viewer: Client, patient_credit: None
) -> None:
    document = {**load_fixture("seed_decision.json"), "id": "dec_01J1B7K9C8N3RXQK9VPYZW0050"}
    SandboxFault.objects.create(
        org=agent.org,
        platform="google",
        kind=SandboxFault.Kind.TRANSIENT,
        remaining=RETRIES,
        key_prefix=step_calls_prefix(first_run_key(document), "credit_target_channel"),
    )
    submit(agent, document)
    drain()

    html = viewer.get(f"/decisions/{document['id']}/").content.decode()
    svg = svg_of(html)
    width, height = viewbox(svg)

    drawn = bars(svg)
    assert len(drawn) == 1 + RETRIES + 1  # the debit, then the credit's fifty tries
    credit = [b for b in drawn if b.get("aria-label", "").startswith("credit_target_channel")]
    numbers = [int(found(r"attempt (\d+)", b.get("aria-label", ""))) for b in credit]
    assert numbers == list(range(1, RETRIES + 2))
    assert "succeeded" in credit[-1].get("aria-label", "")
    assert all("transient" in b.get("aria-label", "") or "5" in b.get("aria-label", "")
               for b in credit[:-1])  # fmt: skip
    # Each bar is a stop of the keyboard, named, and inside the drawing.
    assert all(b.get("tabindex") == "0" and b.get("role") == "img" for b in drawn)
    rects = [b.find(f"{SVG}rect") for b in credit]  # the bar, before its pointing margin
    spans = [(float(r.get("x", 0)), float(r.get("width", 0))) for r in rects if r is not None]
    assert all(x >= 0 and x + w <= width for x, w in spans)
    # The lane's bars follow each other in time and never cover one another.
    assert all(x1 + w1 <= x2 + 1.0 for (x1, w1), (x2, _) in itertools.pairwise(spans))
    waits = [line for line in svg.iter(f"{SVG}line") if "tl-retry" in line.get("class", "")]
    assert len(waits) == RETRIES
    # Three lanes and an axis: the drawing stays short enough to read at a glance.
    assert height < 200
    ticks = [float(t.get("x", 0)) for t in axis_labels(svg)]
    assert all(b - a >= MIN_TICK_GAP for a, b in itertools.pairwise(ticks))
    # The table lists every attempt, numbered the same way.
    table = html.split('class="grid attempts-table"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 1 + 1 + RETRIES + 1  # the head row and 51 attempts


def attempt(lane: str, number: int, start: datetime, seconds: float, outcome: str) -> AttemptView:
    return AttemptView(
        lane=lane,
        name=lane,
        step_id=lane,
        kind="forward",
        number=number,
        started_at=start,
        finished_at=start + timedelta(seconds=seconds),
        outcome=outcome,
        error="platform: unavailable (HTTP 503)" if outcome != "succeeded" else "",
    )


def test_bars_sit_where_their_moments_fall_on_the_axis() -> None:
    start = datetime(2026, 4, 22, 18, 12, 4, tzinfo=UTC)
    tries = [
        attempt("step", n, start + timedelta(seconds=2 * (n - 1)), 0.5, "retried")
        for n in range(1, 50)
    ]
    tries.append(attempt("step", 50, start + timedelta(seconds=98), 0.5, "succeeded"))
    track = Track(
        run_id="wf_TEST",
        lanes=[Lane("step", "step", "forward", "step", "meta")],
        attempts=tries,
        start=start,
        end=start + timedelta(seconds=100),
    )

    svg = ET.fromstring(str(draw(track)))
    rects = [b.find(f"{SVG}rect") for b in bars(svg)]
    xs = [float(r.get("x", 0)) for r in rects if r is not None]
    widths = [float(r.get("width", 0)) for r in rects if r is not None]

    # x is proportional to time: equal gaps for equal waits, a bar as long as its attempt.
    gaps = [b - a for a, b in itertools.pairwise(xs)]
    assert max(gaps) - min(gaps) < 0.2
    assert all(abs(w - gaps[0] / 4) < 0.2 for w in widths)
    # Ticks at round steps, placed on the same scale: 15 s is 7.5 times a 2 s gap.
    ticks = axis_labels(svg)
    assert [t.text for t in ticks[:3]] == ["0", "15 s", "30 s"]
    tick_gap = float(ticks[1].get("x", 0)) - float(ticks[0].get("x", 0))
    assert abs(tick_gap - 7.5 * gaps[0]) < 0.5
    assert float(ticks[0].get("x", 0)) == xs[0]


@pytest.mark.django_db
def test_a_thousand_mutations_are_counted_per_slice_of_time(
    agent: ServiceAccount, viewer: Client
) -> None:
    [decision] = sample_data.decisions(agent, 1)
    sample_data.mutations(decision, 500)

    html = viewer.get(f"/decisions/{decision.id}/").content.decode()
    svg = svg_of(html)

    columns = bars(svg)
    assert 0 < len(columns) <= 2 * 60  # a column per slice and lane, not a bar per attempt
    counted = sum(int(found(r": (\d+) attempt", c.get("aria-label", ""))) for c in columns)
    assert counted == 1000
    assert "too many to draw one by one" in "".join(svg.itertext())
    assert "Show all 1000 attempts" in html  # the table lists the first hundred
    table = html.split('class="grid attempts-table"', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 1 + 100
