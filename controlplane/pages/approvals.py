"""The approvals page: runs held for a person, and approving or rejecting them."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from controlplane.access.tenancy import actor_of, can_approve, current_membership
from controlplane.intake.approvals import decide_held_run, held_runs
from controlplane.pages import queries
from controlplane.pages.amounts import amount_of, total_of
from mutations.services import Surface
from runs.approvals import ApprovalRefused
from runs.models import Approval

RECENT = 100


@require_GET
@login_required
def approvals(request: HttpRequest) -> HttpResponse:
    membership = current_membership(request)
    held = held_runs(membership.org, limit=RECENT)
    context = {
        "org": membership.org,
        "held": [{"item": h, "amount": amount_of(h.decision.action)} for h in held],
        "at_stake": total_of(h.decision.action for h in held),
        "expires_after": settings.BACKSTOP_APPROVAL_TTL_SECONDS,
        "can_approve": can_approve(membership),
        "me": actor_of(request.user),
    }
    return render(request, "controlplane/approvals.html", context)


@require_POST
@login_required
def decide(request: HttpRequest, run_id: str, verdict: str) -> HttpResponse:
    membership = current_membership(request)
    run = queries.get_run(membership.org, run_id)
    comment = request.POST.get("comment", "")[:2000]
    try:
        approval = decide_held_run(
            membership=membership,
            user=request.user,
            run=run,
            approve=verdict == "approve",
            comment=comment,
            surface=Surface.DASHBOARD,
        )
    except (ApprovalRefused, Approval.DoesNotExist) as refused:
        messages.error(request, str(refused) or "This run was never held for approval.")
    else:
        if approval.status == Approval.Status.PENDING:
            verb = (
                f"Approved: {approval.approvals_given} of {approval.required} approvals, "
                f"waiting for {approval.approvals_missing} more"
            )
        elif verdict == "approve":
            verb = "Approved: the runners will execute it"
        else:
            verb = "Rejected"
        messages.success(request, f"{verb} ({run.run_id}).")
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        target = reverse("approvals")
    return redirect(target)
