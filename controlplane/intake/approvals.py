"""Held runs, for the dashboard and the API alike: listing them, approving or rejecting them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction

from controlplane.access.tenancy import APPROVERS, actor_of, can_approve, require
from controlplane.models import Decision, Membership, Organization
from controlplane.notify.outbox import approval_payload, enqueue
from mutations.services import Surface
from runs import approvals
from runs.models import Approval, RunStatus, WorkflowRun
from runs.workflows import get_workflow


@dataclass
class HeldRun:
    """What an approver needs to decide on a held run."""

    run: WorkflowRun

    @property
    def decision(self) -> Decision:
        return self.run.decision

    @property
    def rules(self) -> list[str]:
        evaluation = getattr(self.decision, "evaluation", None)
        return evaluation.deciding_rule_ids if evaluation else []

    @property
    def approval(self) -> Approval:
        return self.run.approval

    @property
    def approved_by(self) -> list[str]:
        return self.approval.approved_by

    @property
    def approvals_given(self) -> int:
        return self.approval.approvals_given

    @property
    def required(self) -> int:
        return self.approval.required

    @property
    def approvals_missing(self) -> int:
        return self.approval.approvals_missing

    @property
    def approver_roles(self) -> list[str]:
        return list(self.approval.approver_roles)

    @property
    def at_stake(self) -> str:
        action = self.decision.action
        if "amount" not in action:
            return "—"
        per = "/day" if action.get("cadence") == "daily" else ""
        return f"{action.get('currency', '')} {Decimal(str(action['amount'])):,.2f}{per}".strip()

    @property
    def plan(self) -> list[dict[str, str]]:
        """Each step and how it would be undone, from the workflow's action contract."""
        workflow = get_workflow(self.run.workflow_id, self.run.workflow_version)
        if workflow is None:
            return []
        return [
            {
                "step": step.id,
                "platform": step.build(self.run.input).platform,
                "undo": step.compensation.id if step.compensation else "",
                "no_rollback_reason": step.no_rollback_reason,
                "reversibility": step.reversibility,
            }
            for step in workflow.steps
        ]


def held_runs(org: Organization, *, limit: int) -> list[HeldRun]:
    """Return the org's runs waiting for a person, oldest first, at most ``limit``."""
    waiting = (
        WorkflowRun.objects.filter(org=org, status=RunStatus.AWAITING_APPROVAL)
        .select_related("decision", "decision__evaluation", "approval")
        .prefetch_related("approval__votes")
        .order_by("created_at")
    )
    return [HeldRun(run) for run in waiting[:limit]]


def decide_held_run(
    *,
    membership: Membership,
    user: Any,
    run: WorkflowRun,
    approve: bool,
    comment: str,
    surface: Surface,
) -> Approval:
    """Vote to approve or reject a run of the member's organization, as that member, from
    ``surface``; the run moves on once it has the approvals its policy rule asked for.

    Raises PermissionDenied for a role that may not decide, ApprovalRefused otherwise.
    """
    if not can_approve(membership):
        raise PermissionDenied("Only approvers and admins may approve or reject held runs.")
    roles = run.approval.approver_roles
    if roles and membership.role not in roles:
        # The policy rule that held the run narrowed who may decide it.
        require(membership, tuple(r for r in APPROVERS if r in roles), to="decide this run")
    approvals.refuse_if_expired(run_id=run.run_id, org_id=run.org_id)
    with transaction.atomic():
        approval = approvals.decide(
            run_id=run.run_id,
            org_id=run.org_id,
            approve=approve,
            user_id=user.pk,
            actor=actor_of(user),
            payload_hash=run.decision.payload_hash,
            surface=surface,
            comment=comment,
        )
        if approval.status != Approval.Status.PENDING:  # pending: more approvers are needed
            verdict = {"decision": approval.status, "decided_by": actor_of(user)}
            enqueue(run.org_id, "approval.decided", approval_payload(run, **verdict))
    return approval
