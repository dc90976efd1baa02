"""Dashboard pages. Polled fragments render a template partial when htmx asks."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.middleware import HtmxDetails

from controlplane import selectors
from controlplane.tenancy import can_operate, current_membership, current_org
from runs.models import RunStatus
from runs.rollback import RollbackRefused, retry_rollback, rollback_evidence

# htmx stops polling when a response has this status.
HTMX_STOP_POLLING = 286
LIST_PAGE_SIZE = 50


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


@require_GET
@login_required
@vary_on_headers("HX-Request")
def decision_list(request: HtmxHttpRequest) -> HttpResponse:
    org = current_org(request.user)
    decisions = list(selectors.decisions_for(org)[:LIST_PAGE_SIZE])
    rows = [
        {
            "decision": d,
            "status": selectors.decision_status(d),
            "platforms": selectors.decision_platforms(d),
        }
        for d in decisions
    ]
    template = "controlplane/decision_list.html"
    if request.htmx:
        template += "#rows"
    return render(request, template, {"org": org, "rows": rows})


@require_GET
@login_required
@vary_on_headers("HX-Request")
def decision_detail(request: HtmxHttpRequest, decision_id: str) -> HttpResponse:
    org = current_org(request.user)
    timeline = selectors.timeline(org, decision_id)
    run = timeline.run
    live = run is not None and not run.is_terminal
    template = "controlplane/decision_detail.html"
    status = 200
    if request.htmx:
        template += "#timeline"
        status = 200 if live else HTMX_STOP_POLLING
    return render(request, template, {"org": org, "t": timeline, "live": live}, status=status)


@require_GET
@login_required
def run_detail(request: HtmxHttpRequest, run_id: str) -> HttpResponse:
    membership = current_membership(request.user)
    run = selectors.get_run(membership.org, run_id)
    context = {
        "org": membership.org,
        "run": run,
        "steps": run.steps.select_related("mutation").order_by("started_at", "id"),
        "evidence": rollback_evidence(run),
        "can_retry": can_operate(membership) and run.status == RunStatus.COMPENSATION_FAILED,
    }
    return render(request, "controlplane/run_detail.html", context)


@require_POST
@login_required
def run_rollback(request: HtmxHttpRequest, run_id: str) -> HttpResponse:
    membership = current_membership(request.user)
    run = selectors.get_run(membership.org, run_id)
    if not can_operate(membership):
        raise PermissionDenied("Only operators and admins may retry a rollback.")
    try:
        retry_rollback(
            run_id=run.run_id,
            org_id=membership.org_id,
            requested_by=f"user:{request.user.get_username()}",
            user_id=request.user.pk,
        )
        messages.success(request, "Rollback retried: the runners will compensate again.")
    except RollbackRefused as refused:
        messages.error(request, str(refused))
    return redirect("run", run_id=run.run_id)
