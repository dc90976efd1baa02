"""The run page: steps, attempts, errors, rollback evidence, and retrying a rollback."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from controlplane.access.tenancy import can_operate, current_membership
from controlplane.pages import queries
from mutations.services import Surface
from runs.models import RunStatus
from runs.rollback import RollbackRefused, retry_rollback, rollback_evidence


@require_GET
@login_required
def run_detail(request: HttpRequest, run_id: str) -> HttpResponse:
    membership = current_membership(request)
    run = queries.get_run(membership.org, run_id)
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
