"""The run page: steps, attempts, errors, rollback evidence, and retrying a rollback."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from controlplane.access.tenancy import can_operate, current_membership
from controlplane.pages import queries
from controlplane.pages.decisions import HTMX_STOP_POLLING, HtmxHttpRequest
from mutations.services import Surface
from runs.models import RunStatus
from runs.rollback import RollbackRefused, retry_rollback, rollback_evidence


@require_GET
@login_required
@vary_on_headers("HX-Request")
def run_detail(request: HtmxHttpRequest, run_id: str) -> HttpResponse:
    """Show a run; while it is live the page polls itself (htmx renders the ``run``
    partial), and the first answer after it ends stops the polling."""
    membership = current_membership(request)
    view = queries.run_view(membership.org, run_id, all_rows=request.GET.get("rows") == "all")
    template, status = "controlplane/run_detail.html", 200
    if request.htmx:
        template += "#run"
        status = 200 if view.live else HTMX_STOP_POLLING
    context = {
        "org": membership.org,
        "view": view,
        "run": view.run,
        "can_retry": can_operate(membership) and view.run.status == RunStatus.COMPENSATION_FAILED,
    }
    return render(request, template, context, status=status)


@require_POST
@login_required
def run_rollback(request: HttpRequest, run_id: str) -> HttpResponse:
    membership = current_membership(request)
    run = queries.get_run(membership.org, run_id)
    if not can_operate(membership):
        raise PermissionDenied("Only operators and admins may retry a rollback.")
    try:
        retry_rollback(
            run_id=run.run_id,
            org_id=membership.org_id,
            requested_by=f"user:{request.user.get_username()}",
            surface=Surface.DASHBOARD,
            user_id=request.user.pk,
        )
        messages.success(request, "Rollback retried: the runners will compensate again.")
    except RollbackRefused as refused:
        messages.error(request, str(refused))
    return redirect("run", run_id=run.run_id)


@require_GET
@login_required
def run_evidence_download(request: HttpRequest, run_id: str) -> HttpResponse:
    run = queries.get_run(current_membership(request).org, run_id)
    response = HttpResponse(
        json.dumps(rollback_evidence(run), indent=2), content_type="application/json"
    )
    response["Content-Disposition"] = f'attachment; filename="{run.run_id}-evidence.json"'
    return response
