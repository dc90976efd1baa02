"""Control-plane use cases: receiving decisions and passing them through the policy gate."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from controlplane.exceptions import DecisionConflict
from controlplane.models import Decision, PolicyEvaluation, Workspace
from controlplane.policy.versions import evaluate_policy
from mutations.ids import new_id
from mutations.models import RuntimeEvent
from mutations.services import record_event
from runs.services import create_run
from runs.workflows import workflow_for

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
    surface: str,
    user_id: int | None = None,
    drill: bool = False,
) -> Submission:
    """Store a validated decision, evaluate the policy, and start or hold its run.

    Submitting the same id with the same payload returns the stored decision; with a
    different payload it raises DecisionConflict. Everything happens in one transaction.
    """
    document = {"id": document.get("id") or new_id("dec"), **document}
    digest = payload_hash(document)
    existing = Decision.objects.filter(pk=document["id"]).first()
    if existing is not None:
        return _replay(existing, workspace, digest)
    try:
        with transaction.atomic():
            decision = _receive(workspace, document, digest, requested_by, surface, user_id, drill)
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
    surface: str,
    user_id: int | None,
    drill: bool,
) -> Decision:
    workflow = workflow_for(document["type"])
    if workflow is None:
        raise ValueError(f"No workflow serves decision type {document['type']!r}.")
    now = timezone.now()
    trace_id = new_id("trc")
    decision = Decision.objects.create(
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
        received_at=now,
    )
    common: dict[str, Any] = {
        "org_id": workspace.org_id,
        "workspace_id": workspace.id,
        "user_id": user_id,
        "decision_id": decision.id,
        "trace_id": trace_id,
        "surface": surface,
    }
    record_event(
        kind=RuntimeEvent.Kind.DECISION_RECEIVED,
        delta_summary=decision.summary,
        payload={"requested_by": requested_by, "payload_hash": digest},
        **common,
    )
    inputs = {
        **document,
        "requested_by": requested_by,
        "env": settings.BACKSTOP_ENV,
        "approval_present": False,
        **workflow.contract(document),
    }
    policy, evaluation = evaluate_policy(workspace, inputs)
    PolicyEvaluation.objects.create(
        decision=decision,
        org_id=workspace.org_id,
        policy=policy,
        policy_version=policy.version if policy else NO_POLICY,
        outcome=evaluation.outcome,
        matched_rule_ids=evaluation.matched_rule_ids,
        deciding_rule_ids=evaluation.deciding_rule_ids,
        inputs=inputs,
        evaluated_at=timezone.now(),
    )
    record_event(
        kind=RuntimeEvent.Kind.POLICY_EVALUATED,
        policy_ids=evaluation.matched_rule_ids,
        delta_summary=f"Policy {policy.version if policy else NO_POLICY}: {evaluation.outcome}"
        + (
            f" by {', '.join(evaluation.deciding_rule_ids)}" if evaluation.deciding_rule_ids else ""
        ),
        payload={
            "outcome": evaluation.outcome,
            "deciding_rule_ids": evaluation.deciding_rule_ids,
            "policy_version": policy.version if policy else NO_POLICY,
        },
        **common,
    )
    if drill:
        # A drill touches sandbox platforms only: the gate's outcome is recorded, not obeyed.
        held = False
    elif evaluation.outcome == PolicyEvaluation.Outcome.DENY:
        return decision
    else:
        held = evaluation.outcome == PolicyEvaluation.Outcome.REQUIRE_HUMAN
    run = create_run(
        org_id=workspace.org_id,
        workspace_id=workspace.id,
        decision_id=decision.id,
        decision=document,
        workflow=workflow,
        requested_by=requested_by,
        trace_id=trace_id,
        policy_ids=evaluation.matched_rule_ids,
        payload_hash=digest,
        awaiting_approval=held,
        is_drill=drill,
    )
    if held:
        record_event(
            kind=RuntimeEvent.Kind.APPROVAL_REQUESTED,
            run_id=run.run_id,
            policy_ids=evaluation.matched_rule_ids,
            delta_summary="Held for a human approver",
            payload={"workflow_run_id": run.run_id},
            **common,
        )
    return decision


def _parse_time(value: str) -> datetime:
    moment = parse_datetime(value)
    if moment is None:
        raise ValueError(f"{value!r} is not an ISO 8601 date and time.")
    return moment
