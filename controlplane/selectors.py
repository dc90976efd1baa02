"""Reads that the pages and the API share, always scoped to one organization."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.shortcuts import get_object_or_404

from controlplane.models import Decision, Organization, PolicyEvaluation
from mutations.models import Mutation, RuntimeEvent
from runs.models import WorkflowRun

MINUS = "\u2212"


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
        decisions = decisions.filter(Q(summary__icontains=text) | Q(id=text))
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
        decisions = decisions.filter(
            Q(received_at__lt=received_at) | Q(received_at=received_at, id__lt=decision_id)
        )
    page = list(decisions[: size + 1])
    more = len(page) > size
    page = page[:size]
    return page, ((page[-1].received_at, page[-1].id) if more else None)


def get_decision(org: Organization, decision_id: str) -> Decision:
    return get_object_or_404(Decision.objects.for_org(org), pk=decision_id)


def get_run(org: Organization, run_id: str) -> WorkflowRun:
    return get_object_or_404(WorkflowRun.objects.filter(org=org), pk=run_id)


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


def human_delta(mutation: Mutation, cadence: str = "daily") -> str:
    """Return a signed, readable change such as "-$800/day" (with a real minus sign)."""
    payload = mutation.payload
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


@dataclass
class MutationRow:
    mutation: Mutation
    number: int
    delta: str
    reverses: MutationRow | None = None
    reversed_by: list[MutationRow] = field(default_factory=list)

    @property
    def is_compensation(self) -> bool:
        return self.mutation.actor_type == Mutation.COMPENSATION_ACTOR


@dataclass
class Timeline:
    decision: Decision
    evaluation: PolicyEvaluation | None
    runs: list[WorkflowRun]
    rows: list[MutationRow]
    events: list[RuntimeEvent]
    status: str

    @property
    def run(self) -> WorkflowRun | None:
        return self.runs[-1] if self.runs else None

    @property
    def net_zero(self) -> bool | None:
        run = self.run
        if run is None or not run.before_state_hash or not run.after_state_hash:
            return None
        return run.before_state_hash == run.after_state_hash


def timeline(org: Organization, decision_id: str) -> Timeline:
    """Return everything the decision page shows, in a fixed number of queries."""
    decision = get_object_or_404(decisions_for(org).select_related("evaluation"), pk=decision_id)
    cadence = str(decision.action.get("cadence", "daily"))
    rows: list[MutationRow] = []
    by_id: dict[str, MutationRow] = {}
    for number, mutation in enumerate(mutations_for(org, decision_id), start=1):
        row = MutationRow(mutation=mutation, number=number, delta=human_delta(mutation, cadence))
        rows.append(row)
        by_id[mutation.mutation_id] = row
    for row in rows:
        original = by_id.get(row.mutation.compensates_id or "")
        if original is not None:
            row.reverses = original
            original.reversed_by.append(row)
    return Timeline(
        decision=decision,
        evaluation=getattr(decision, "evaluation", None),
        runs=list(
            WorkflowRun.objects.filter(org=org, decision_id=decision_id).order_by("created_at")
        ),
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
