"""Audited redrive: an operator runs a decision that ended badly again, as a new attempt.

The new run has its own idempotency key (``<decision_id>-attempt-<n>``), so its platform
calls are new calls; it goes through the policy gate again, and a held verdict holds it
again. Who asked, when and why are events of the decision, in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from controlplane.access.tenancy import OPERATORS, actor_of, require
from controlplane.intake.submit import start_run
from controlplane.models import Decision, Membership, PolicyEvaluation
from controlplane.policy.rules import Evaluation
from controlplane.policy.versions import evaluate_policy
from mutations.models import RuntimeEvent
from mutations.services import Surface, record_event
from runs.keys import run_key
from runs.models import RunStatus, WorkflowRun
from runs.workflows import workflow_for

# The run states a decision is redriven from: nothing left applied that a new attempt
# would stack on (failed, compensated), or never started (expired).
REDRIVABLE = (RunStatus.FAILED, RunStatus.COMPENSATED, RunStatus.EXPIRED)
REASON_MAX_LENGTH = 2000
NO_POLICY = "none"


class RedriveRefused(Exception):
    """The decision cannot be redriven now; the message says why and what to do."""


@dataclass(frozen=True)
class Redrive:
    """A redrive: its attempt number, the gate's verdict, and the new run (None if denied)."""

    decision: Decision
    attempt: int
    outcome: str
    run: WorkflowRun | None


def redrivable(latest: WorkflowRun | None) -> bool:
    """Return whether a decision whose newest run is ``latest`` may be redriven."""
    return latest is not None and not latest.is_drill and latest.status in REDRIVABLE


def next_attempt(decision: Decision) -> int:
    """Return the attempt number a redrive of ``decision`` would get."""
    return decision.runs.count() + 1


def redrive_decision(
    *, membership: Membership, user: Any, decision_id: str, reason: str, surface: Surface
) -> Redrive:
    """Run a failed, compensated or expired decision again as a new attempt, as ``user``.

    Raises RoleRequired for a role other than operator or admin, ValueError without a
    reason, RedriveRefused for a decision in another state, Decision.DoesNotExist for a
    decision of another organization.
    """
    require(membership, OPERATORS, to="redrive a decision")
    reason = reason.strip()
    if not reason:
        raise ValueError("Say why the decision is redriven: the reason is kept with it.")
    actor = actor_of(user)
    with transaction.atomic():
        # Locking the decision orders concurrent redrives: one attempt number each.
        decision = Decision.objects.select_for_update().get(pk=decision_id, org=membership.org)
        latest = decision.runs.order_by("-created_at").first()
        if not redrivable(latest):
            raise RedriveRefused(_why_not(latest))
        assert latest is not None  # redrivable() says so
        attempt = next_attempt(decision)
        common: dict[str, Any] = {
            "org_id": decision.org_id,
            "workspace_id": decision.workspace_id,
            "user_id": user.pk,
            "decision_id": decision.id,
            "trace_id": decision.trace_id,
            "surface": surface,
        }
        record_event(
            kind=RuntimeEvent.Kind.DECISION_RECEIVED,
            delta_summary=f"{actor} redrove the decision as attempt {attempt}: {reason}",
            payload={
                "redrive": True,
                "attempt": attempt,
                "idempotency_key": run_key(decision.id, attempt),
                "reason": reason,
                "requested_by": actor,
                "previous_run_id": latest.run_id,
                "previous_status": latest.status,
            },
            **common,
        )
        return _gate_and_start(decision, attempt=attempt, common=common, surface=surface)


def _why_not(latest: WorkflowRun | None) -> str:
    allowed = ", ".join(str(s) for s in REDRIVABLE)
    if latest is None:
        return f"This decision has no run to redrive; only a {allowed} one can be redriven."
    if latest.is_drill:
        return "A drill's decision is not redriven: start a new drill instead."
    return (
        f"Only a {allowed} decision can be redriven; its latest run {latest.run_id} is "
        f"{latest.status}."
    )


def _gate_and_start(
    decision: Decision, *, attempt: int, common: dict[str, Any], surface: Surface
) -> Redrive:
    """Pass the decision through the workspace's active policy again and start (or hold)
    its new attempt; a deny starts nothing."""
    workflow = workflow_for(decision.type)
    if workflow is None:
        raise RedriveRefused(f"No workflow serves decision type {decision.type!r} any more.")
    inputs = {
        **decision.document,
        "requested_by": decision.requested_by,
        "env": settings.BACKSTOP_ENV,
        "approval_present": False,
        **workflow.contract(decision.document),
    }
    policy, evaluation = evaluate_policy(decision.workspace, inputs)
    _record_gate(
        evaluation, version=policy.version if policy else NO_POLICY, attempt=attempt, common=common
    )
    if evaluation.outcome == PolicyEvaluation.Outcome.DENY:
        return Redrive(decision=decision, attempt=attempt, outcome=evaluation.outcome, run=None)
    held = evaluation.outcome == PolicyEvaluation.Outcome.REQUIRE_HUMAN
    run = start_run(
        decision,
        workflow,
        evaluation,
        held=held,
        surface=surface,
        user_id=common["user_id"],
        attempt=attempt,
    )
    return Redrive(decision=decision, attempt=attempt, outcome=evaluation.outcome, run=run)


def _record_gate(
    evaluation: Evaluation, *, version: str, attempt: int, common: dict[str, Any]
) -> None:
    """Record the gate's verdict on the new attempt as an event (the decision's first
    verdict stays its PolicyEvaluation)."""
    deciding = evaluation.deciding_rule_ids
    record_event(
        kind=RuntimeEvent.Kind.POLICY_EVALUATED,
        policy_ids=evaluation.matched_rule_ids,
        delta_summary=f"Policy {version} on attempt {attempt}: {evaluation.outcome}"
        + (f" by {', '.join(deciding)}" if deciding else ""),
        payload={
            "outcome": evaluation.outcome,
            "deciding_rule_ids": deciding,
            "policy_version": version,
            "attempt": attempt,
        },
        **common,
    )
