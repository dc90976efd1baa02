"""Control-plane use cases: receiving decisions and passing them through the policy gate."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from controlplane.exceptions import DecisionConflict
from controlplane.models import Decision, PolicyEvaluation, Workspace
from controlplane.notify.outbox import approval_payload, enqueue
from controlplane.policy.rules import Evaluation
from controlplane.policy.versions import evaluate_policy
from mutations.ids import new_id
from mutations.models import RuntimeEvent
from mutations.rows import insert_rows
from mutations.services import Surface, new_event
from runs import tracing
from runs.events import record_run_event
from runs.keys import FIRST_ATTEMPT
from runs.models import WorkflowRun
from runs.services import create_run
from runs.workflows import Workflow, workflow_for

POLICY_DIR = Path(__file__).resolve().parent.parent / "policies"
NO_POLICY = "none"


@dataclass(frozen=True)
class Submission:
    decision: Decision
    created: bool


def payload_hash(document: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def submit_decision(
    *,
    workspace: Workspace,
    document: dict[str, Any],
    requested_by: str,
    surface: Surface,
    user_id: int | None = None,
    drill: bool = False,
    engine: str | None = None,
) -> Submission:
    """Store a validated decision, evaluate the policy, and start or hold its run (on
    ``engine``; default: the BACKSTOP_ENGINE setting).

    Submitting the same id with the same payload returns the stored decision; with a
    different payload it raises DecisionConflict. Everything happens in one transaction.
    """
    document = {"id": document.get("id") or new_id("dec"), **document}
    digest = payload_hash(document)
    existing = Decision.objects.filter(pk=document["id"]).first()
    if existing is not None:
        return _replay(existing, workspace, digest)
    trace_id = new_id("trc")
    try:
        with (
            tracing.decision_span(
                "decision.intake", trace_id, decision_id=document["id"], type=document["type"]
            ),
            transaction.atomic(),
        ):
            decision = _receive(
                workspace,
                document,
                digest,
                requested_by,
                surface,
                user_id,
                drill,
                trace_id,
                engine,
            )
    except IntegrityError:
        # The same id arrived twice at once; the first one won.
        return _replay(Decision.objects.get(pk=document["id"]), workspace, digest)
    return Submission(decision=decision, created=True)


def _replay(existing: Decision, workspace: Workspace, digest: str) -> Submission:
    if existing.org_id != workspace.org_id or existing.payload_hash != digest:
        raise DecisionConflict(existing.id)
    return Submission(decision=existing, created=False)


def _receive(
    workspace: Workspace,
    document: dict[str, Any],
    digest: str,
    requested_by: str,
    surface: Surface,
    user_id: int | None,
    drill: bool,
    trace_id: str,
    engine: str | None,
) -> Decision:
    workflow = workflow_for(document["type"])
    if workflow is None:
        raise ValueError(f"No workflow serves decision type {document['type']!r}.")
    decision = _store_decision(workspace, document, digest, requested_by, trace_id)
    # What every event of the decision carries.
    common: dict[str, Any] = {
        "org_id": workspace.org_id,
        "workspace_id": workspace.id,
        "user_id": user_id,
        "decision_id": decision.id,
        "trace_id": decision.trace_id,
        "surface": surface,
    }
    received = new_event(
        kind=RuntimeEvent.Kind.DECISION_RECEIVED,
        delta_summary=decision.summary,
        payload={"requested_by": requested_by, "payload_hash": digest},
        **common,
    )
    evaluation, evaluated = _evaluate_gate(workspace, decision, workflow, common)
    insert_rows(RuntimeEvent, [received, evaluated])
    tracing.annotate(outcome=evaluation.outcome)
    if drill:
        # A drill touches sandbox platforms only: the gate's outcome is recorded, not obeyed.
        held = False
    elif evaluation.outcome == PolicyEvaluation.Outcome.DENY:
        return decision
    else:
        held = evaluation.outcome == PolicyEvaluation.Outcome.REQUIRE_HUMAN
    run = start_run(
        decision,
        workflow,
        evaluation,
        held=held,
        drill=drill,
        surface=surface,
        user_id=user_id,
        engine=engine,
    )
    tracing.annotate(run_id=run.run_id)
    return decision


def _store_decision(
    workspace: Workspace, document: dict[str, Any], digest: str, requested_by: str, trace_id: str
) -> Decision:
    """Store the decision as received, with its new trace id."""
    decision = Decision(
        id=document["id"],
        org_id=workspace.org_id,
        workspace=workspace,
        type=document["type"],
        priority=document["priority"],
        confidence=document["confidence"],
        summary=document["summary"],
        reasoning=document["reasoning"],
        auto_executable=document["auto_executable"],
        action=document["action"],
        computed_at=_parse_time(document["computed_at"]),
        policy_version=document["policy_version"],
        document=document,
        payload_hash=digest,
        requested_by=requested_by,
        trace_id=trace_id,
        received_at=timezone.now(),
    )
    insert_rows(Decision, [decision])
    return decision


def _evaluate_gate(
    workspace: Workspace, decision: Decision, workflow: Workflow, common: dict[str, Any]
) -> tuple[Evaluation, RuntimeEvent]:
    """Evaluate the workspace's policy on the decision and its action contract; record the
    evaluation and return it with its event, unsaved."""
    inputs = {
        **decision.document,
        "requested_by": decision.requested_by,
        "env": settings.BACKSTOP_ENV,
        "approval_present": False,
        **workflow.contract(decision.document),
    }
    with tracing.child_span("policy.evaluate", decision_id=decision.id):
        policy, evaluation = evaluate_policy(workspace, inputs)
        version = policy.version if policy else NO_POLICY
        tracing.annotate(
            outcome=evaluation.outcome,
            policy_version=version,
            matched_rule_ids=evaluation.matched_rule_ids,
        )
    stored = PolicyEvaluation(
        decision=decision,
        org_id=workspace.org_id,
        policy=policy,
        policy_version=version,
        outcome=evaluation.outcome,
        matched_rule_ids=evaluation.matched_rule_ids,
        deciding_rule_ids=evaluation.deciding_rule_ids,
        inputs=inputs,
        evaluated_at=timezone.now(),
    )
    insert_rows(PolicyEvaluation, [stored])
    deciding = evaluation.deciding_rule_ids
    event = new_event(
        kind=RuntimeEvent.Kind.POLICY_EVALUATED,
        policy_ids=evaluation.matched_rule_ids,
        delta_summary=f"Policy {version}: {evaluation.outcome}"
        + (f" by {', '.join(deciding)}" if deciding else ""),
        payload={
            "outcome": evaluation.outcome,
            "deciding_rule_ids": deciding,
            "policy_version": version,
        },
        **common,
    )
    return evaluation, event


def start_run(
    decision: Decision,
    workflow: Workflow,
    evaluation: Evaluation,
    *,
    held: bool,
    surface: Surface,
    user_id: int | None,
    drill: bool = False,
    attempt: int = FIRST_ATTEMPT,
    engine: str | None = None,
) -> WorkflowRun:
    """Create the decision's run (its first attempt, or a later one: a redrive) on
    ``engine`` (default: BACKSTOP_ENGINE); a held run asks for a human approver."""
    run = create_run(
        org_id=decision.org_id,
        workspace_id=decision.workspace_id,
        decision_id=decision.id,
        decision=decision.document,
        workflow=workflow,
        requested_by=decision.requested_by,
        trace_id=decision.trace_id,
        policy_ids=evaluation.matched_rule_ids,
        payload_hash=decision.payload_hash,
        awaiting_approval=held,
        is_drill=drill,
        attempt=attempt,
        approvals=evaluation.approvals,
        approver_roles=evaluation.approver_roles,
        engine=engine,
    )
    if held:
        again = attempt > FIRST_ATTEMPT
        record_run_event(
            run,
            RuntimeEvent.Kind.APPROVAL_REQUESTED,
            surface=surface,
            user_id=user_id,
            delta_summary=f"Attempt {attempt} held for a human approver"
            if again
            else "Held for a human approver",
            payload={"workflow_run_id": run.run_id, **({"attempt": attempt} if again else {})},
        )
        enqueue(run.org_id, "approval.requested", approval_payload(run, summary=decision.summary))
    return run


def _parse_time(value: str) -> datetime:
    moment = parse_datetime(value)
    if moment is None:
        raise ValueError(f"{value!r} is not an ISO 8601 date and time.")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    # Stored in UTC: an offset may be any Python allows (±23:59), PostgreSQL's stop at 15:59.
    return moment.astimezone(UTC)
