"""The drills page: start one drill or all of them, schedule them, read their reports."""

from __future__ import annotations

from collections import OrderedDict
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from controlplane.access.tenancy import (
    OPERATORS,
    actor_of,
    can_operate,
    current_membership,
    default_workspace,
    require,
)
from controlplane.drills.schedule import drill_everything
from controlplane.drills.start import DrillRefused, start_drill
from controlplane.models import Drill, DrillPlan, Fault, Membership
from controlplane.pages import queries
from controlplane.pages.decisions import HTMX_STOP_POLLING, HtmxHttpRequest
from runs.workflows.registry import all_workflows

HISTORY = 50
TREND = 10
SCHEDULES = {"daily": 86_400, "weekly": 7 * 86_400}


def _operator(request: HttpRequest, *, to: str = "start drills") -> Membership:
    return require(current_membership(request), OPERATORS, to=to)


@require_GET
@login_required
@vary_on_headers("HX-Request")
def drills(request: HtmxHttpRequest) -> HttpResponse:
    membership = current_membership(request)
    org = membership.org
    # Finished drills are verified by the runners (verify_finished_drills); a GET only reads.
    recent = list(Drill.objects.filter(org=org).select_related("run")[:HISTORY])
    by_workflow: dict[str, list[Drill]] = OrderedDict()
    for drill in recent:
        by_workflow.setdefault(drill.workflow_id, []).append(drill)
    unfinished = any(drill.passed is None for drill in recent)
    context = {
        "org": org,
        "recent": recent,
        "matrix": _matrix(recent),
        "trends": {w: list(reversed(d[:TREND])) for w, d in by_workflow.items()},
        "alerts": [d[0] for d in by_workflow.values() if d[0].passed is False],
        "unfinished": unfinished,
        "choices": [(w.id, s.id) for w in all_workflows() for s in w.steps],
        "faults": Fault.choices,
        "plans": DrillPlan.objects.filter(org=org).order_by("next_run_at"),
        "can_operate": can_operate(membership),
    }
    if request.htmx:
        # The results while drills run; once none is left unfinished, the last answer
        # also stops the polling.
        status = 200 if unfinished else HTMX_STOP_POLLING
        return render(request, "controlplane/drills.html#results", context, status=status)
    return render(request, "controlplane/drills.html", context)


def _matrix(recent: list[Drill]) -> list[dict[str, Any]]:
    """Rows of workflows, a cell per step: the latest drill failing it, and the latest
    drill with a failing compensation."""
    rows = []
    for workflow in all_workflows():
        mine = [d for d in recent if d.workflow_id == workflow.id]
        cells = [
            (
                step.id,
                next(
                    (
                        d
                        for d in mine
                        if d.step_id == step.id and d.fault != Fault.COMPENSATION_FAILS
                    ),
                    None,
                ),
            )
            for step in workflow.steps
        ]
        failing_undo = next((d for d in mine if d.fault == Fault.COMPENSATION_FAILS), None)
        rows.append({"workflow": workflow.id, "cells": cells, "compensation": failing_undo})
    return rows


@require_GET
@login_required
def drill_detail(request: HttpRequest, drill_id: str) -> HttpResponse:
    membership = current_membership(request)
    drill = queries.get_drill(membership.org, drill_id)
    run = drill.run
    took = run.finished_at - run.created_at if run and run.finished_at else None
    context = {"org": membership.org, "drill": drill, "took": took}
    return render(request, "controlplane/drill_detail.html", context)


@require_POST
@login_required
def start(request: HttpRequest) -> HttpResponse:
    membership = _operator(request)
    workflow_id, _, step_id = request.POST.get("target", "").partition(":")
    try:
        drill = start_drill(
            workspace=default_workspace(membership.org),
            workflow_id=workflow_id,
            step_id=step_id,
            fault=request.POST.get("fault", ""),
            started_by=actor_of(request.user),
            user_id=request.user.pk,
        )
    except DrillRefused as refused:
        messages.error(request, str(refused))
        return redirect("drills")
    return redirect("drill", drill_id=drill.id)


@require_POST
@login_required
def start_all(request: HttpRequest) -> HttpResponse:
    membership = _operator(request)
    started = drill_everything(
        workspace=default_workspace(membership.org),
        started_by=actor_of(request.user),
        user_id=request.user.pk,
    )
    messages.success(request, f"Started {len(started)} drills: the matrix fills in as they finish.")
    return redirect("drills")


@require_POST
@login_required
def schedule(request: HttpRequest) -> HttpResponse:
    membership = _operator(request, to="schedule drills")
    workflow_id, _, step_id = request.POST.get("target", "").partition(":")
    every = SCHEDULES.get(request.POST.get("every", ""))
    fault = request.POST.get("fault", "")
    if every is None or fault not in Fault.values or not step_id:
        messages.error(request, "Choose a step, a fault and how often (daily or weekly).")
        return redirect("drills")
    DrillPlan.objects.create(
        org=membership.org,
        workspace=default_workspace(membership.org),
        workflow_id=workflow_id,
        step_id=step_id,
        fault=fault,
        every_seconds=every,
        next_run_at=timezone.now() + timedelta(seconds=every),
        created_by=actor_of(request.user),
    )
    messages.success(
        request, f"Scheduled: {workflow_id} with {step_id} failing, {request.POST['every']}."
    )
    return redirect("drills")
