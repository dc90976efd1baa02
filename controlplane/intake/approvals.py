"""Approving and rejecting held runs, for the dashboard and the API alike."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied

from controlplane.access.tenancy import actor_of, can_approve
from controlplane.models import Membership
from runs import approvals
from runs.models import Approval, WorkflowRun


def decide_held_run(
    *, membership: Membership, user: Any, run: WorkflowRun, approve: bool, comment: str
) -> Approval:
    """Approve or reject a run of the member's organization, as that member.

    Raises PermissionDenied for a role that may not decide, ApprovalRefused otherwise.
    """
    if not can_approve(membership):
        raise PermissionDenied("Only approvers and admins may approve or reject held runs.")
    return approvals.decide(
        run_id=run.run_id,
        org_id=run.org_id,
        approve=approve,
        user_id=user.pk,
        actor=actor_of(user),
        payload_hash=run.decision.payload_hash,
        comment=comment,
    )
