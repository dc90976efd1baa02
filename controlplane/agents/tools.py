"""What an agent may do through the MCP tools, as plain functions of its principal.

The same validation, idempotency and conflicts as the REST API (they call the same intake);
answers are JSON-ready dicts. Nothing here approves, rejects or rolls back: those stay
with people.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import OuterRef, Subquery
from rest_framework.exceptions import ErrorDetail

from controlplane.access.tokens import AgentPrincipal
from controlplane.api import shapes
from controlplane.exceptions import DecisionConflict
from controlplane.intake.serializers import DecisionInSerializer
from controlplane.intake.submit import submit_decision
from controlplane.models import Decision, Workspace, decision_status
from controlplane.policy.versions import evaluate_policy
from mutations.connectors import known_platforms
from mutations.ids import is_valid_id
from mutations.services import Surface
from runs.models import TERMINAL_STATUSES, RunStatus, WorkflowRun
from runs.workflows.action_schema import action_schema
from runs.workflows.registry import Workflow, all_workflows

RECENT_LIMIT = 100  # list_my_decisions answers at most this many
# What list_actions assumes of a decision besides its action, to preview the policy.
TYPICAL = {"priority": "medium", "confidence": 0.9, "auto_executable": True}


class ToolRefused(Exception):
    """A call the tool cannot carry out, with what to change (shown to the agent as is)."""


def list_actions(principal: AgentPrincipal) -> dict[str, Any]:
    """Return the decision types the agent may propose, with their action schemas and what
    the active policy does with typical values."""
    workspace = principal.service_account.workspace
    return {
        "actions": [_describe(workspace, workflow) for workflow in all_workflows()],
        "platforms": known_platforms(),
    }


def _describe(workspace: Workspace, workflow: Workflow) -> dict[str, Any]:
    return {
        "decision_type": workflow.decision_type,
        "workflow_id": workflow.id,
        "workflow_version": workflow.version,
        "description": workflow.description,
        "steps": [step.id for step in workflow.steps],
        "reversibility": workflow.reversibility,
        "action_schema": action_schema(workflow),
        "policy_preview": _preview(workspace, workflow),
    }


def _preview(workspace: Workspace, workflow: Workflow) -> dict[str, Any] | None:
    """Return what the workspace's active policy does with a typical decision of this
    workflow (its drill's action), or None when the workflow has no typical action."""
    if workflow.drill_action is None:
        return None
    action = {"type": workflow.decision_type, **workflow.drill_action("example")}
    decision = {"type": workflow.decision_type, **TYPICAL, "action": action}
    inputs = {
        **decision,
        "requested_by": "agent",
        "env": settings.BACKSTOP_ENV,
        "approval_present": False,
        **workflow.contract(decision),
    }
    policy, evaluation = evaluate_policy(workspace, inputs)
    return {
        "assumes": decision,
        "policy_version": policy.version if policy else None,
        "outcome": evaluation.outcome,
        "deciding_rule_ids": evaluation.deciding_rule_ids,
    }


def propose_decision(principal: AgentPrincipal, document: Any, base_url: str) -> dict[str, Any]:
    """Submit a decision as the REST API does; return its id, the policy's verdict and its
    run, and for a held decision where a person approves it."""
    serializer = DecisionInSerializer(data=document)
    if not serializer.is_valid():
        raise ToolRefused("The decision is invalid: " + "; ".join(_problems(serializer.errors)))
    fields = {key: document[key] for key in serializer.validated_data}
    try:
        submission = submit_decision(
            workspace=principal.service_account.workspace,
            document=fields,
            requested_by=principal.service_account.actor,
            surface=Surface.MCP,
        )
    except DecisionConflict as conflict:
        raise ToolRefused(f"{conflict} (409 conflict)") from None
    answer = _summary(_decision(principal, submission.decision.id), base_url)
    return {"created": submission.created, **answer}


def get_decision(principal: AgentPrincipal, decision_id: str, base_url: str) -> dict[str, Any]:
    """Return where a decision stands: its status, its run, its Mutation Log entries, the
    before/after state hashes and whether the net change is zero."""
    decision = _decision(principal, decision_id)
    entries = list(decision.mutations.order_by("created_at", "mutation_id"))
    return {
        **_summary(decision, base_url),
        "mutations": [shapes.MutationEntry(entry).data for entry in entries],
        "count": len(entries),
    }


def is_settled(answer: dict[str, Any]) -> bool:
    """Return whether a decision's answer will not change any more (wait_for_decision)."""
    return bool(answer["terminal"])


def list_my_decisions(
    principal: AgentPrincipal, *, status: str = "", decision_type: str = "", limit: int = 20
) -> dict[str, Any]:
    """Return this agent's newest decisions, optionally of one status or type."""
    if not 1 <= limit <= RECENT_LIMIT:
        raise ToolRefused(f"limit: must be between 1 and {RECENT_LIMIT}; got {limit}.")
    newest_run = WorkflowRun.objects.filter(decision=OuterRef("pk")).order_by("-created_at")
    decisions = (
        Decision.objects.filter(org=principal.org, requested_by=principal.service_account.actor)
        .select_related("evaluation")
        .annotate(run_status=Subquery(newest_run.values("status")[:1]))
        .order_by("-received_at", "-id")
    )
    if decision_type:
        decisions = decisions.filter(type=decision_type)
    if status in RunStatus.values:
        decisions = decisions.filter(run_status=status)
    elif status == "denied":
        decisions = decisions.filter(run_status=None, evaluation__outcome="deny")
    elif status == "received":
        decisions = decisions.filter(run_status=None).exclude(evaluation__outcome="deny")
    elif status:
        known = ", ".join([*RunStatus.values, "denied", "received"])
        raise ToolRefused(f"status: must be one of {known}; got {status!r}.")
    rows = [
        {
            "decision_id": d.id,
            "type": d.type,
            "summary": d.summary,
            "status": decision_status(d),
            "received_at": shapes.Moment().to_representation(d.received_at),
        }
        for d in decisions[:limit]
    ]
    return {"decisions": rows, "count": len(rows)}


def _decision(principal: AgentPrincipal, decision_id: str) -> Decision:
    if not isinstance(decision_id, str) or not is_valid_id(decision_id, "dec"):
        raise ToolRefused(
            f"decision_id: must be 'dec_' followed by 26 characters of 0-9 and A-Z; "
            f"got {decision_id!r}."
        )
    decision = Decision.objects.filter(org=principal.org, pk=decision_id).first()
    if decision is None:  # another org's id reads as unknown
        raise ToolRefused(f"decision_id: no decision {decision_id} in your organization.")
    return decision


def _summary(decision: Decision, base_url: str) -> dict[str, Any]:
    run = decision.runs.order_by("-created_at").first()
    evaluation = getattr(decision, "evaluation", None)
    answer: dict[str, Any] = {
        "decision_id": decision.id,
        "status": run.status if run else decision_status(decision),
        "terminal": run.is_terminal if run else True,
        "policy": {
            "outcome": evaluation.outcome,
            "policy_version": evaluation.policy_version,
            "matched_rule_ids": evaluation.matched_rule_ids,
            "deciding_rule_ids": evaluation.deciding_rule_ids,
        }
        if evaluation
        else None,
        "run_id": run.run_id if run else None,
        "before_state_hash": run.before_state_hash if run else None,
        "after_state_hash": run.after_state_hash if run else None,
        "net_change": _net_change(run),
        "timeline_url": f"{base_url}/decisions/{decision.id}/",
    }
    if run is not None and run.status == RunStatus.AWAITING_APPROVAL:
        answer["pending"] = {
            "awaiting_approval": True,
            "approval_url": f"{base_url}/approvals/",
            "then": f"call wait_for_decision with decision_id {decision.id}",
        }
    return answer


def _net_change(run: WorkflowRun | None) -> str:
    """Return the verdict a person reads: 'zero' (undone without a trace), 'drift' (the
    state differs after an undo), 'applied' (completed), 'pending', or 'none'."""
    if run is None or run.status in {RunStatus.REJECTED, RunStatus.EXPIRED}:
        return "none"
    if run.status not in TERMINAL_STATUSES or run.after_state_hash is None:
        return "pending"
    if run.status == RunStatus.COMPLETED:
        return "applied"
    return "zero" if run.after_state_hash == run.before_state_hash else "drift"


def _problems(errors: Any, prefix: str = "") -> list[str]:
    """Flatten a serializer's errors into 'field: message' lines."""
    if isinstance(errors, dict):
        return [
            line
            for key, value in errors.items()
            for line in _problems(value, f"{prefix}.{key}" if prefix else str(key))
        ]
    if isinstance(errors, list):
        return [line for item in errors for line in _problems(item, prefix)]
    text = str(errors) if isinstance(errors, ErrorDetail | str) else repr(errors)
    return [f"{prefix}: {text}" if prefix and prefix != "non_field_errors" else text]
