"""What the overview shows, read in a fixed number of aggregate queries for one organization.

The counts are computed by the database (COUNT ... GROUP BY over the indexes of
controlplane/migrations/0004_overview_indexes.py); the hourly ones count each settled
minute once (controlplane/pages/overview_counts.py), so a request reads minutes, not a day,
of rows. Only bounded row sets reach Python: the held runs (each waits for a person), the
first runs needing a person, the last drill of each workflow and a sample of step durations.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Window
from django.db.models.functions import RowNumber, TruncHour
from django.utils import timezone

from controlplane.models import Drill, Organization, PolicyEvaluation
from controlplane.pages.overview_counts import Bucket, hourly_counts
from mutations.models import LogHead
from runs.models import RUNNABLE_STATUSES, TERMINAL_STATUSES, RunStatus, StepExecution, WorkflowRun

WINDOW_HOURS = 24
LATENCY_SAMPLE = 1000  # the most recent forward steps the percentiles are taken over
NEEDS_PERSON_LISTED = 10
OUTCOMES = tuple(PolicyEvaluation.Outcome.values)  # allow, deny, require_human
# Terminal states in the order a person reads them: the two resting points first.
STATES = (
    RunStatus.COMPLETED,
    RunStatus.COMPENSATED,
    RunStatus.FAILED,
    RunStatus.COMPENSATION_FAILED,
    RunStatus.REJECTED,
    RunStatus.EXPIRED,
    RunStatus.CANCELLED,
)
# Runs that executed and came to an end: the compensation rate's denominator. A rejected
# or expired run never started, so it can neither need nor get a compensation.
ENDED = frozenset(TERMINAL_STATUSES) - {RunStatus.REJECTED, RunStatus.EXPIRED}


@dataclass
class HourCount:
    """The real decisions of one clock hour (UTC), by policy outcome."""

    start: datetime
    allow: int = 0
    deny: int = 0
    require_human: int = 0

    @property
    def total(self) -> int:
        return self.allow + self.deny + self.require_human


@dataclass(frozen=True)
class Held:
    """Runs waiting for an approver, whatever their age."""

    count: int = 0
    oldest_at: datetime | None = None
    oldest_decision_id: str = ""
    oldest_summary: str = ""
    at_stake: tuple[str, ...] = ()  # "USD 6,000.00/day", one per currency and cadence


@dataclass(frozen=True)
class Latency:
    """Step latency over the most recent forward steps of the window, in seconds."""

    p50: float | None = None
    p95: float | None = None
    sample: int = 0


@dataclass(frozen=True)
class DrillResult:
    drill: Drill
    result: str  # passed | failed | verifying | running


@dataclass(frozen=True)
class StateCount:
    status: str
    count: int


@dataclass
class Overview:
    since: datetime
    now: datetime
    hours: list[HourCount]
    outcomes: dict[str, int]
    drill_decisions: int
    states: list[StateCount]
    in_flight: int
    drill_runs: int
    held: Held
    needs_person: Sequence[WorkflowRun]
    needs_person_total: int
    drills: list[DrillResult]
    log: LogHead | None
    latency: Latency = field(default_factory=Latency)

    @property
    def decisions(self) -> int:
        return sum(self.outcomes.values())

    @property
    def ended(self) -> int:
        return sum(s.count for s in self.states if s.status in ENDED)

    @property
    def compensated(self) -> int:
        return next(s.count for s in self.states if s.status == RunStatus.COMPENSATED)

    @property
    def compensation_rate(self) -> float | None:
        """Return compensated ÷ runs that executed and ended, or None before any ended."""
        return self.compensated / self.ended if self.ended else None

    @property
    def compensation_percent(self) -> str:
        rate = self.compensation_rate
        return "—" if rate is None else f"{rate:.1%}".replace(".0%", "%")


def window_start(now: datetime) -> datetime:
    """Return the start of the 24 hourly buckets ending with the current hour, so that the
    counts and the chart's bars cover the same rows."""
    hour = now.replace(minute=0, second=0, microsecond=0)
    return hour - timedelta(hours=WINDOW_HOURS - 1)


def overview(org: Organization, *, now: datetime | None = None) -> Overview:
    """Return everything the overview shows for ``org``, in nine queries however many rows."""
    now = now or timezone.now()
    since = window_start(now)
    hours, drill_decisions = decisions_by_hour(org, since, now)
    states, in_flight, drill_runs = runs_by_state(org, since, now)
    needs_person, needs_person_total = runs_needing_a_person(org)
    return Overview(
        since=since,
        now=now,
        hours=hours,
        outcomes={o: sum(getattr(h, o) for h in hours) for o in OUTCOMES},
        drill_decisions=drill_decisions,
        states=states,
        in_flight=in_flight,
        drill_runs=drill_runs,
        held=held_runs(org),
        needs_person=needs_person,
        needs_person_total=needs_person_total,
        drills=last_drills(org),
        log=LogHead.objects.filter(org=org).first(),
        latency=step_latency(org, since),
    )


def decisions_by_hour(
    org: Organization, since: datetime, now: datetime
) -> tuple[list[HourCount], int]:
    """Return the real decisions of each hour since ``since`` by policy outcome, and the
    number of drill decisions left out.

    Drills are counted on their own (few rows, reached from the Drill table) and
    subtracted, so that the large count needs no anti-join against drills.
    """
    every = hourly_counts(
        f"evaluations:{org.pk}",
        PolicyEvaluation.objects.filter(org=org),
        moment="evaluated_at",
        keys=("outcome",),
        since=since,
        now=now,
    )
    # started_at follows the drill's evaluation, so it bounds the drills to look at.
    drills = (
        Drill.objects.filter(
            org=org, started_at__gte=since, decision__evaluation__evaluated_at__gte=since
        )
        .annotate(
            hour=TruncHour("decision__evaluation__evaluated_at", tzinfo=UTC),
            outcome=F("decision__evaluation__outcome"),
        )
        .values("hour", "outcome")
        .annotate(n=Count("*"))
        .order_by()
    )
    drilled: Counter[Bucket] = Counter(
        {(row["hour"], (row["outcome"],)): row["n"] for row in drills}
    )
    hours = [HourCount(since + timedelta(hours=n)) for n in range(WINDOW_HOURS)]
    by_start = {h.start: h for h in hours}
    for (start, (outcome,)), count in (every - drilled).items():
        if start in by_start and outcome in OUTCOMES:
            setattr(by_start[start], outcome, getattr(by_start[start], outcome) + count)
    return hours, drilled.total()


def runs_by_state(
    org: Organization, since: datetime, now: datetime
) -> tuple[list[StateCount], int, int]:
    """Return the real runs that ended since ``since`` by how they ended, how many real runs
    are executing now, and how many drill runs were left out of both."""
    ended = hourly_counts(
        f"ended-runs:{org.pk}",
        # A compensation_failed run can leave that state (a retried rollback), so it is
        # counted below, from its own small index, rather than kept.
        WorkflowRun.objects.filter(org=org).exclude(status=RunStatus.COMPENSATION_FAILED),
        moment="finished_at",
        keys=("status", "is_drill"),
        since=since,
        now=now,
    )
    real: Counter[str] = Counter()
    drills = 0
    for (_, (status, is_drill)), n in ended.items():
        if is_drill:
            drills += n
        else:
            real[status] += n
    current = (
        WorkflowRun.objects.filter(org=org)
        .filter(
            Q(status=RunStatus.COMPENSATION_FAILED, finished_at__gte=since)
            | Q(status__in=RUNNABLE_STATUSES)
        )
        .values("status", "is_drill")
        .annotate(n=Count("*"))
        .order_by()
    )
    in_flight = 0
    for row in current:
        if row["is_drill"]:
            drills += row["n"]
        elif row["status"] == RunStatus.COMPENSATION_FAILED:
            real[row["status"]] += row["n"]
        else:
            in_flight += row["n"]
    states = [StateCount(status, real[status]) for status in STATES]
    return states, in_flight, drills


def held_runs(org: Organization) -> Held:
    """Return how many runs wait for an approver, the oldest, and the money at stake.

    Amounts are summed here rather than in SQL: they are JSON values a workflow may give as
    numbers or numeric strings. The rows are few: each one waits for a person.
    """
    rows = list(
        WorkflowRun.objects.filter(org=org, status=RunStatus.AWAITING_APPROVAL)
        .order_by("created_at", "run_id")
        .values_list(
            "created_at",
            "decision_id",
            "decision__summary",
            "decision__action__amount",
            "decision__action__currency",
            "decision__action__cadence",
        )
    )
    if not rows:
        return Held()
    totals: dict[tuple[str, str], Decimal] = {}
    for _, _, _, amount, currency, cadence in rows:
        if (value := _number(amount)) is not None:
            key = (str(currency or ""), "/day" if cadence == "daily" else "")
            totals[key] = totals.get(key, Decimal(0)) + value
    oldest_at, decision_id, summary, *_ = rows[0]
    return Held(
        count=len(rows),
        oldest_at=oldest_at,
        oldest_decision_id=decision_id,
        oldest_summary=summary,
        at_stake=tuple(
            f"{currency} {total:,.2f}{per}".strip()
            for (currency, per), total in sorted(totals.items())
        ),
    )


def _number(value: Any) -> Decimal | None:
    """Return an amount as a Decimal, or None when it is not a finite number (a held
    decision with no amount, or an odd one, must not hide the others' sum)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def runs_needing_a_person(org: Organization) -> tuple[Sequence[WorkflowRun], int]:
    """Return the newest real runs stuck in compensation_failed and how many there are.

    A drill's failing compensation is planned, so drills are left to the drills page.
    """
    runs = list(
        WorkflowRun.objects.filter(org=org, status=RunStatus.COMPENSATION_FAILED, is_drill=False)
        .select_related("decision")
        .only(
            "run_id",
            "workflow_id",
            "failed_step_id",
            "finished_at",
            "updated_at",
            "decision__id",
            "decision__summary",
        )
        .annotate(total=Window(Count("*")))
        .order_by("-finished_at", "-run_id")[:NEEDS_PERSON_LISTED]
    )
    return runs, (runs[0].total if runs else 0)


def last_drills(org: Organization) -> list[DrillResult]:
    """Return the most recent drill of each workflow, by workflow id."""
    latest = (
        Drill.objects.filter(org=org)
        .select_related("run")
        .only(
            "id",
            "workflow_id",
            "step_id",
            "fault",
            "passed",
            "verified_at",
            "started_at",
            "run__run_id",
            "run__status",
        )
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=[F("workflow_id")],
                order_by=[F("started_at").desc(), F("id").desc()],
            )
        )
        .filter(rank=1)
        .order_by("workflow_id")
    )
    return [DrillResult(drill, drill_result(drill)) for drill in latest]


def drill_result(drill: Drill) -> str:
    """Return a drill's result in one word: passed, failed, verifying or running."""
    if drill.passed is not None:
        return "passed" if drill.passed else "failed"
    return "verifying" if drill.verifying else "running"


def step_latency(org: Organization, since: datetime) -> Latency:
    """Return p50 and p95 of how long forward steps took, first attempt to outcome, over
    the most recent LATENCY_SAMPLE steps that finished since ``since``."""
    took = (
        StepExecution.objects.filter(
            org=org,
            kind=StepExecution.Kind.FORWARD,
            finished_at__gte=since,
            started_at__isnull=False,
        )
        .annotate(took=ExpressionWrapper(F("finished_at") - F("started_at"), DurationField()))
        .order_by("-finished_at")
        .values_list("took", flat=True)[:LATENCY_SAMPLE]
    )
    seconds = sorted(max(t.total_seconds(), 0.0) for t in took if t is not None)
    if not seconds:
        return Latency()
    return Latency(p50=percentile(seconds, 0.5), p95=percentile(seconds, 0.95), sample=len(seconds))


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Return the ``fraction`` percentile of sorted values, interpolated between the two
    nearest ranks as PostgreSQL's percentile_cont does."""
    if not ordered:
        raise ValueError("percentile() needs at least one value.")
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
