"""Reads that the pages and the API share, always scoped to one organization."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery, TextField
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce
from django.http import Http404
from django.shortcuts import get_object_or_404

from controlplane.models import Decision, Drill, Organization, PolicyEvaluation, decision_status
from controlplane.pages.view_models import (
    CurrentState,
    MutationRef,
    MutationRow,
    RunView,
    Timeline,
    change_delta,
)
from mutations.connectors import PlatformError
from mutations.hashing import snapshot_scope
from mutations.ids import is_valid_id
from mutations.models import Mutation, RuntimeEvent
from runs.models import RunStatus, StepExecution, WorkflowRun

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
    """Return the org's decisions matching the list's filters, newest first, with what a
    row shows of the latest run: whether it is a drill, when it began to execute (an
    approval's moment for a held run) and when it finished."""
    latest = WorkflowRun.objects.filter(decision=OuterRef("pk")).order_by("-created_at")
    began = latest.annotate(began=Coalesce("approval__decided_at", "created_at"))
    decisions = decisions_for(org).annotate(
        run_is_drill=Subquery(latest.values("is_drill")[:1]),
        run_began_at=Subquery(began.values("began")[:1]),
        run_finished_at=Subquery(latest.values("finished_at")[:1]),
    )
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


def timeline(
    org: Organization, decision_id: str, *, all_rows: bool = False, event_kind: str = ""
) -> Timeline:
    """Return everything the decision page shows, in a fixed number of queries (and, while
    its latest run is live, one read of its scope's state).

    Every mutation is drawn and counted; the first TIMELINE_ROWS (or all) are listed in full.
    """
    decision = get_object_or_404(decisions_for(org), pk=well_formed(decision_id, "dec"))
    mutations = mutations_for(org, decision_id)
    refs = _mutation_refs(mutations, cadence=str(decision.action.get("cadence", "daily")))
    rows = _mutation_rows(mutations if all_rows else mutations[:TIMELINE_ROWS], refs)
    events = list(events_for(org, decision_id))
    runs = _run_views(org, decision_id, refs=refs, events=events, all_rows=all_rows)
    for row in rows:
        view = next((v for v in runs if v.run.run_id == row.mutation.run_id), None)
        row.calls = view.calls_of(row.mutation.mutation_id) if view else []
    if runs and runs[-1].live:
        runs[-1].current = current_state(runs[-1].run)
    return Timeline(
        decision=decision,
        evaluation=getattr(decision, "evaluation", None),
        runs=runs,
        refs=refs,
        rows=rows,
        events=events,
        status=decision_status(decision),
        event_kind=event_kind if event_kind in RuntimeEvent.Kind.values else "",
    )


def run_view(org: Organization, run_id: str, *, all_rows: bool = False) -> RunView:
    """Return what the run page shows, in a fixed number of queries (and, while the run is
    live, one read of its scope's state)."""
    runs = WorkflowRun.objects.filter(org=org).select_related("approval", "approval__decided_by")
    run = get_object_or_404(runs, pk=well_formed(run_id, "wf"))
    steps = list(run.steps.select_related("compensates", "mutation").order_by("started_at", "id"))
    cadence = str((run.input.get("action") or {}).get("cadence", "daily"))
    entries = _mutation_refs(
        Mutation.objects.filter(org=org, run=run).order_by("created_at", "mutation_id"),
        cadence=cadence,
    )
    started = (
        RuntimeEvent.objects.filter(org=org, run=run, kind=RuntimeEvent.Kind.RUN_STARTED)
        .order_by("timestamp")
        .values_list("timestamp", flat=True)
        .first()
    )
    view = RunView(run=run, steps=steps, entries=entries, started_at=started, all_rows=all_rows)
    if view.live:
        view.current = current_state(run)
    return view


def current_state(run: WorkflowRun) -> CurrentState | None:
    """Read the state of a running run's scope now: from the database for the sandbox, by
    a call for an HTTP platform (bounded by its connector's timeout). Nothing is written.
    None when the run has not taken its before-state yet."""
    if run.status not in (RunStatus.RUNNING, RunStatus.COMPENSATING) or not run.scope:
        return None
    try:
        return CurrentState(snapshot_scope(org_id=run.org_id, scope=run.scope))
    except PlatformError as error:
        return CurrentState(None, f"The platforms' current state could not be read: {error}")
    except (LookupError, ValueError) as error:
        return CurrentState(None, f"The platforms' current state could not be read: {error}")


def _mutation_refs(mutations: QuerySet[Mutation], *, cadence: str) -> list[MutationRef]:
    """Return a light reference to every mutation, numbered from 1: plain columns rather
    than model instances, as a decision may have thousands. The JSON columns come as text,
    parsed only when a replay needs them; the change's size comes from the database."""
    columns = mutations.values_list(
        "mutation_id",
        "platform",
        "status",
        "step_id",
        "created_at",
        "compensates_id",
        KT("payload__daily_budget_delta_micros"),
        KT("payload__status"),
        "run_id",
        "mutation_type",
        Cast("payload", TextField()),
        Cast("target", TextField()),
        Cast("result", TextField()),
        "error_message",
    )
    return [
        MutationRef(
            number=number,
            mutation_id=mutation_id,
            platform=platform,
            status=status,
            step_id=step_id,
            created_at=at,
            compensates_id=compensates,
            delta=change_delta(micros, new_status, cadence),
            run_id=run_id,
            mutation_type=mutation_type,
            payload_json=payload,
            target_json=target,
            result_json=result,
            error_message=error,
        )
        for number, (
            mutation_id,
            platform,
            status,
            step_id,
            at,
            compensates,
            micros,
            new_status,
            run_id,
            mutation_type,
            payload,
            target,
            result,
            error,
        ) in enumerate(columns, start=1)
    ]


def _mutation_rows(listed: QuerySet[Mutation], refs: list[MutationRef]) -> list[MutationRow]:
    """Return the listed mutations in full, each linked to what it reverses and what
    reversed it."""
    by_id = {ref.mutation_id: ref for ref in refs}
    undone_by: dict[str, list[MutationRef]] = {}
    for ref in refs:
        if ref.compensates_id:
            undone_by.setdefault(ref.compensates_id, []).append(ref)
    return [
        MutationRow(
            mutation=mutation,
            ref=ref,
            reverses=by_id.get(mutation.compensates_id or ""),
            reversed_by=undone_by.get(mutation.mutation_id, []),
        )
        for mutation, ref in zip(listed, refs, strict=False)
    ]


def _run_views(
    org: Organization,
    decision_id: str,
    *,
    refs: list[MutationRef],
    events: list[RuntimeEvent],
    all_rows: bool,
) -> list[RunView]:
    """Return the decision's runs, oldest first, each with its steps (two queries), its
    Mutation Log entries and when it started running (from what the caller loaded)."""
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
    entries: dict[str | None, list[MutationRef]] = {}
    for ref in refs:
        entries.setdefault(ref.run_id, []).append(ref)
    started = {e.run_id: e.timestamp for e in events if e.kind == RuntimeEvent.Kind.RUN_STARTED}
    return [
        RunView(
            run=run,
            steps=steps[run.run_id],
            entries=entries.get(run.run_id, []),
            started_at=started.get(run.run_id),
            all_rows=all_rows,
        )
        for run in runs
    ]
