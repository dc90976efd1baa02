"""Reads that the pages and the API share, always scoped to one organization."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils.dateparse import parse_datetime
from django.utils.safestring import SafeString

from controlplane.models import Decision, Drill, Organization, PolicyEvaluation
from controlplane.pages.timeline_svg import Mark, Tick, draw
from mutations.ids import is_valid_id
from mutations.models import Mutation, RuntimeEvent
from mutations.serializers import mutation_entry, query_result
from runs.models import Approval, StepExecution, WorkflowRun
from runs.rollback import rollback_evidence
from runs.workflows import get_workflow

MINUS = "\u2212"
TIMELINE_ROWS = 100  # mutation rows listed before "show all"


def decisions_for(org: Organization) -> QuerySet[Decision]:
    """Return the org's decisions, newest first, with their latest run's status."""
    latest = WorkflowRun.objects.filter(decision=OuterRef("pk")).order_by("-created_at")
    return (
        Decision.objects.for_org(org)
        .select_related("evaluation")
        .annotate(
            run_id=Subquery(latest.values("run_id")[:1]),
            run_status=Subquery(latest.values("status")[:1]),
        )
        .order_by("-received_at", "-id")
    )


def filtered_decisions(org: Organization, filters: dict[str, Any]) -> QuerySet[Decision]:
    """Return the org's decisions matching the list's filters, newest first."""
    decisions = decisions_for(org)
    runs = WorkflowRun.objects.filter(decision=OuterRef("pk"))
    status = filters.get("status")
    if status == "denied":
        decisions = decisions.filter(evaluation__outcome=PolicyEvaluation.Outcome.DENY)
    elif status:
        decisions = decisions.filter(Exists(runs.filter(status=status)))
    if filters.get("type"):
        decisions = decisions.filter(type=filters["type"])
    if platform := filters.get("platform"):
        decisions = decisions.filter(
            Q(action__source_channel=platform)
            | Q(action__target_channel=platform)
            | Q(action__channel=platform)
        )
    if filters.get("received_from"):
        decisions = decisions.filter(received_at__date__gte=filters["received_from"])
    if filters.get("received_to"):
        decisions = decisions.filter(received_at__date__lte=filters["received_to"])
    if text := (filters.get("q") or "").strip():
        if is_valid_id(text, "dec"):
            decisions = decisions.filter(id=text)
        else:
            decisions = decisions.filter(summary__icontains=text)
    if filters.get("drills") == "only":
        decisions = decisions.filter(Exists(runs.filter(is_drill=True)))
    elif filters.get("drills") == "exclude":
        decisions = decisions.exclude(Exists(runs.filter(is_drill=True)))
    return decisions


def decision_page(
    org: Organization, filters: dict[str, Any], *, size: int
) -> tuple[list[Decision], tuple[datetime, str] | None]:
    """Return one page of the list after the keyset cursor, and the cursor of the next page.

    Keyset pagination keeps every page as fast as the first, however deep.
    """
    decisions = filtered_decisions(org, filters)
    if after := filters.get("after"):
        received_at, decision_id = after
        # The first condition bounds the index range scan; the second breaks ties by id.
        decisions = decisions.filter(received_at__lte=received_at).filter(
            Q(received_at__lt=received_at) | Q(id__lt=decision_id)
        )
    page = list(decisions[: size + 1])
    more = len(page) > size
    page = page[:size]
    return page, ((page[-1].received_at, page[-1].id) if more else None)


def well_formed(value: str, prefix: str) -> str:
    """Return an id of the right shape, or 404 before it reaches the database (an id from
    a URL may hold anything, NUL bytes included)."""
    if not is_valid_id(value, prefix):
        raise Http404(f"No {prefix}_ object {value[:40]!r}.")
    return value


def get_decision(org: Organization, decision_id: str) -> Decision:
    return get_object_or_404(Decision.objects.for_org(org), pk=well_formed(decision_id, "dec"))


def get_run(org: Organization, run_id: str) -> WorkflowRun:
    return get_object_or_404(WorkflowRun.objects.filter(org=org), pk=well_formed(run_id, "wf"))


def get_drill(org: Organization, drill_id: str) -> Drill:
    drills = Drill.objects.filter(org=org).select_related("run")
    return get_object_or_404(drills, pk=well_formed(drill_id, "drl"))


def mutations_for(org: Organization, decision_id: str) -> QuerySet[Mutation]:
    return Mutation.objects.filter(org=org, decision_id=decision_id).order_by(
        "created_at", "mutation_id"
    )


def events_for(org: Organization, decision_id: str) -> QuerySet[RuntimeEvent]:
    return RuntimeEvent.objects.filter(org=org, decision_id=decision_id).order_by(
        "timestamp", "event_id"
    )


def decision_status(decision: Decision) -> str:
    """Return what a person wants to know first: the run's state, or the gate's verdict."""
    run_status: str | None = getattr(decision, "run_status", None)
    if run_status:
        return run_status
    evaluation: PolicyEvaluation | None = getattr(decision, "evaluation", None)
    if evaluation is not None and evaluation.outcome == PolicyEvaluation.Outcome.DENY:
        return "denied"
    return "received"


def decision_platforms(decision: Decision) -> list[str]:
    action = decision.action
    names = [action.get(k) for k in ("source_channel", "target_channel", "channel")]
    return [n for n in names if isinstance(n, str)]


def human_delta(payload: dict[str, Any], cadence: str = "daily") -> str:
    """Return a signed, readable change such as "-$800/day" (with a real minus sign)."""
    if "daily_budget_delta_micros" in payload:
        micros = int(payload["daily_budget_delta_micros"])
        amount = Decimal(abs(micros)) / 1_000_000
        text = f"{amount:,.2f}".removesuffix(".00")
        sign = MINUS if micros < 0 else "+"
        per = "/day" if cadence == "daily" else ""
        return f"{sign}${text}{per}"
    if "status" in payload:
        return f"status \u2192 {payload['status']}"
    return ""


@dataclass(frozen=True)
class MutationRef:
    """What the timeline knows of every mutation, however many: enough to draw and link it."""

    number: int
    mutation_id: str
    platform: str
    status: str
    step_id: str
    created_at: datetime
    compensates_id: str | None
    delta: str


@dataclass
class MutationRow:
    """A mutation listed in full on the page."""

    mutation: Mutation
    ref: MutationRef
    reverses: MutationRef | None = None
    reversed_by: list[MutationRef] = field(default_factory=list)
    earlier_calls: list[dict[str, Any]] = field(default_factory=list)  # failed attempts before it

    @property
    def number(self) -> int:
        return self.ref.number

    @property
    def delta(self) -> str:
        return self.ref.delta

    @property
    def is_compensation(self) -> bool:
        return self.mutation.actor_type == Mutation.COMPENSATION_ACTOR


@dataclass
class RunView:
    """A run with what its timeline card shows, computed from the steps loaded once."""

    run: WorkflowRun
    steps: list[StepExecution]

    @property
    def approval(self) -> Approval | None:
        return getattr(self.run, "approval", None)

    @property
    def retries(self) -> int:
        return sum(max(step.attempts - 1, 0) for step in self.steps)

    @property
    def evidence(self) -> dict[str, Any]:
        return rollback_evidence(self.run, self.steps)


@dataclass
class Timeline:
    decision: Decision
    evaluation: PolicyEvaluation | None
    runs: list[RunView]
    refs: list[MutationRef]  # every mutation, for the drawing and the counts
    rows: list[MutationRow]  # the ones listed in full
    events: list[RuntimeEvent]
    status: str

    @property
    def hidden_rows(self) -> int:
        return len(self.refs) - len(self.rows)

    @property
    def run(self) -> WorkflowRun | None:
        return self.runs[-1].run if self.runs else None

    @property
    def net_zero(self) -> bool | None:
        run = self.run
        if run is None or not run.before_state_hash or not run.after_state_hash:
            return None
        return run.before_state_hash == run.after_state_hash

    @property
    def drift(self) -> bool:
        """A compensated run whose state did not come back: the undo did not restore it."""
        run = self.run
        return bool(run and run.status == "compensated" and self.net_zero is False)

    @property
    def mutation_log(self) -> dict[str, Any]:
        """The Mutation Log query result, exactly as the API returns it (all rows shown)."""
        entries = [mutation_entry(row.mutation) for row in self.rows]
        return query_result({"decision_id": self.decision.id}, entries)

    @property
    def svg(self) -> SafeString:
        marks = [
            Mark(
                mutation_id=ref.mutation_id,
                number=ref.number,
                platform=ref.platform,
                status=ref.status,
                at=ref.created_at,
                label=f"#{ref.number} {ref.step_id} {ref.status} {ref.delta}",
                reverses=ref.compensates_id,
            )
            for ref in self.refs
        ]
        return draw(marks, self._retry_ticks())

    def _retry_ticks(self) -> list[Tick]:
        ticks = []
        for view in self.runs:
            for step in view.steps:
                for error in step.errors:
                    at = parse_datetime(error["at"])
                    if step.mutation is not None and at is not None:
                        label = f"{step.name} attempt {error['attempt']}: {error['message']}"
                        ticks.append(Tick(platform=step.mutation.platform, at=at, label=label))
        return ticks


def timeline(org: Organization, decision_id: str, *, all_rows: bool = False) -> Timeline:
    """Return everything the decision page shows, in a fixed number of queries.

    Every mutation is drawn and counted; the first TIMELINE_ROWS (or all) are listed in full.
    """
    decision = get_object_or_404(decisions_for(org), pk=well_formed(decision_id, "dec"))
    cadence = str(decision.action.get("cadence", "daily"))
    mutations = mutations_for(org, decision_id)
    refs = [
        MutationRef(
            number,
            mutation_id,
            platform,
            status,
            step_id,
            at,
            compensates,
            human_delta(payload, cadence),
        )
        for number, (mutation_id, platform, status, step_id, at, compensates, payload) in enumerate(
            mutations.values_list(
                "mutation_id",
                "platform",
                "status",
                "step_id",
                "created_at",
                "compensates_id",
                "payload",
            ),
            start=1,
        )
    ]
    by_id = {ref.mutation_id: ref for ref in refs}
    undone_by: dict[str, list[MutationRef]] = {}
    for ref in refs:
        if ref.compensates_id:
            undone_by.setdefault(ref.compensates_id, []).append(ref)
    listed = mutations if all_rows else mutations[:TIMELINE_ROWS]
    rows = [
        MutationRow(
            mutation=mutation,
            ref=ref,
            reverses=by_id.get(mutation.compensates_id or ""),
            reversed_by=undone_by.get(mutation.mutation_id, []),
        )
        for mutation, ref in zip(listed, refs, strict=False)
    ]
    runs = list(
        WorkflowRun.objects.filter(org=org, decision_id=decision_id)
        .select_related("approval", "approval__decided_by")
        .order_by("created_at")
    )
    steps: dict[str, list[StepExecution]] = {run.run_id: [] for run in runs}
    for step in (
        StepExecution.objects.filter(org=org, run__decision_id=decision_id)
        .select_related("compensates", "mutation")
        .order_by("started_at", "id")
    ):
        steps[step.run_id].append(step)
    attempts = {s.mutation_id: s.errors for run_steps in steps.values() for s in run_steps}
    for row in rows:
        errors = attempts.get(row.mutation.mutation_id) or []
        # A step that failed for good recorded its last attempt both as an error and as the row.
        row.earlier_calls = errors[:-1] if row.mutation.status == Mutation.Status.FAILED else errors
    return Timeline(
        decision=decision,
        evaluation=getattr(decision, "evaluation", None),
        runs=[RunView(run=run, steps=steps[run.run_id]) for run in runs],
        refs=refs,
        rows=rows,
        events=list(events_for(org, decision_id)),
        status=decision_status(decision),
    )


def evaluation_summary(evaluation: PolicyEvaluation | None) -> dict[str, Any] | None:
    if evaluation is None:
        return None
    return {
        "policy_version": evaluation.policy_version,
        "outcome": evaluation.outcome,
        "matched_rule_ids": evaluation.matched_rule_ids,
        "deciding_rule_ids": evaluation.deciding_rule_ids,
    }


@dataclass
class HeldRun:
    """What an approver needs to decide on a held run."""

    run: WorkflowRun

    @property
    def decision(self) -> Decision:
        return self.run.decision

    @property
    def rules(self) -> list[str]:
        evaluation = getattr(self.decision, "evaluation", None)
        return evaluation.deciding_rule_ids if evaluation else []

    @property
    def at_stake(self) -> str:
        action = self.decision.action
        if "amount" not in action:
            return "—"
        per = "/day" if action.get("cadence") == "daily" else ""
        return f"{action.get('currency', '')} {Decimal(str(action['amount'])):,.2f}{per}".strip()

    @property
    def plan(self) -> list[dict[str, str]]:
        """Each step and how it would be undone, from the workflow's action contract."""
        workflow = get_workflow(self.run.workflow_id, self.run.workflow_version)
        if workflow is None:
            return []
        return [
            {
                "step": step.id,
                "platform": step.build(self.run.input).platform,
                "undo": step.compensation.id if step.compensation else "",
                "no_rollback_reason": step.no_rollback_reason,
                "reversibility": step.reversibility,
            }
            for step in workflow.steps
        ]
