"""Pages of the organization: switching organizations, held actions, drills, policies."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from controlplane.access.tenancy import SESSION_ORG, can_approve, current_membership
from controlplane.intake.approvals import decide_held_run
from controlplane.models import Membership
from controlplane.pages import selectors
from controlplane.pages.selectors import HeldRun
from runs.approvals import ApprovalRefused
from runs.models import Approval, RunStatus, WorkflowRun

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
    membership = current_membership(request)
    held = [
        HeldRun(run)
        for run in WorkflowRun.objects.filter(
            org=membership.org, status=RunStatus.AWAITING_APPROVAL
        )
        .select_related("decision", "decision__evaluation", "approval")
        .order_by("created_at")[:RECENT]
    ]
    context = {"org": membership.org, "held": held, "can_approve": can_approve(membership)}
    return render(request, "controlplane/approvals.html", context)


@require_POST
@login_required
def decide(request: HttpRequest, run_id: str, verdict: str) -> HttpResponse:
    membership = current_membership(request)
    run = selectors.get_run(membership.org, run_id)
    comment = request.POST.get("comment", "")[:2000]
    try:
        decide_held_run(
            membership=membership,
            user=request.user,
            run=run,
            approve=verdict == "approve",
            comment=comment,
        )
    except (ApprovalRefused, Approval.DoesNotExist) as refused:
        messages.error(request, str(refused) or "This run was never held for approval.")
    else:
        verb = "Approved: the runners will execute it" if verdict == "approve" else "Rejected"
        messages.success(request, f"{verb} ({run.run_id}).")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = reverse("approvals")
    return redirect(target)
