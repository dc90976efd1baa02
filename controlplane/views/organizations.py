"""Pages of the organization: switching organizations, held actions, drills, policies."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from controlplane.models import Membership, PolicyVersion
from controlplane.tenancy import SESSION_ORG, current_org
from runs.models import RunStatus, WorkflowRun

RECENT = 100


@require_POST
@login_required
def switch_org(request: HttpRequest) -> HttpResponse:
    membership = Membership.objects.filter(
        user_id=request.user.pk or 0, org_id=request.POST.get("org_id", "")
    ).first()
    if membership is None:
        raise Http404("You are not a member of that organization.")
    request.session[SESSION_ORG] = membership.org_id
    return redirect("decisions")


@require_GET
@login_required
def approvals(request: HttpRequest) -> HttpResponse:
    org = current_org(request)
    held = (
        WorkflowRun.objects.filter(org=org, status=RunStatus.AWAITING_APPROVAL)
        .select_related("decision", "decision__evaluation")
        .order_by("created_at")[:RECENT]
    )
    return render(request, "controlplane/approvals.html", {"org": org, "held": held})


@require_GET
@login_required
def drills(request: HttpRequest) -> HttpResponse:
    org = current_org(request)
    runs = (
        WorkflowRun.objects.filter(org=org, is_drill=True)
        .select_related("decision")
        .order_by("-created_at")[:RECENT]
    )
    return render(request, "controlplane/drills.html", {"org": org, "runs": runs})


@require_GET
@login_required
def policies(request: HttpRequest) -> HttpResponse:
    org = current_org(request)
    versions = (
        PolicyVersion.objects.filter(org=org)
        .select_related("workspace")
        .order_by("-is_active", "-activated_at")
    )
    return render(request, "controlplane/policies.html", {"org": org, "versions": versions})
