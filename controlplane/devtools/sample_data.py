"""Rows in bulk, as the runner leaves them: for page tests and the page benchmark."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from controlplane.intake.submit import payload_hash
from controlplane.models import Decision, PolicyEvaluation, ServiceAccount
from mutations import chain
from mutations.ids import new_id
from mutations.models import Mutation
from runs.keys import FIRST_ATTEMPT, compensation_key, run_key, step_key
from runs.models import RunStatus, WorkflowRun

SEED_DECISION = Path(__file__).resolve().parent.parent / "demo_data" / "01_seed_rebalance.json"


def decisions(
    agent: ServiceAccount, count: int, *, batch_size: int = 2000, **changes: Any
) -> list[Decision]:
    """Create ``count`` completed rebalance decisions, one second apart, newest last."""
    template = json.loads(SEED_DECISION.read_text())
    start = timezone.now() - timedelta(seconds=count)
    made, evaluations, runs = [], [], []
    for n in range(count):
        document = {**template, "id": new_id("dec"), **changes}
        decision = Decision(
            id=document["id"],
            org=agent.org,
            workspace=agent.workspace,
            type=document["type"],
            priority=document["priority"],
            confidence=document["confidence"],
            summary=f"{document['summary']} #{n}",
            reasoning=document["reasoning"],
            auto_executable=True,
            action=document["action"],
            computed_at=start,
            policy_version="budget_policy_v1",
            document=document,
            payload_hash=payload_hash(document),
            requested_by=agent.actor,
            trace_id=new_id("trc"),
            received_at=start + timedelta(seconds=n),
        )
        made.append(decision)
        evaluations.append(_allowed(agent, decision))
        runs.append(_completed_run(agent, decision))
    Decision.objects.bulk_create(made, batch_size=batch_size)
    PolicyEvaluation.objects.bulk_create(evaluations, batch_size=batch_size)
    WorkflowRun.objects.bulk_create(runs, batch_size=batch_size)
    return made


def _allowed(agent: ServiceAccount, decision: Decision) -> PolicyEvaluation:
    """Return the policy evaluation that let ``decision`` through."""
    return PolicyEvaluation(
        decision=decision,
        org=agent.org,
        policy_version="budget_policy_v1",
        outcome="allow",
        matched_rule_ids=["allow-market-rebalance"],
        evaluated_at=decision.received_at,
    )


def _completed_run(agent: ServiceAccount, decision: Decision) -> WorkflowRun:
    """Return the run of ``decision``, completed the moment it was received."""
    return WorkflowRun(
        org=agent.org,
        workspace=agent.workspace,
        decision=decision,
        workflow_id="execute_rebalance_spend",
        workflow_version=1,
        status=RunStatus.COMPLETED,
        idempotency_key=run_key(decision.id, FIRST_ATTEMPT),
        requested_by=agent.actor,
        input=decision.document,
        scope={},
        trace_id=decision.trace_id,
        next_wake_at=decision.received_at,
        created_at=decision.received_at,
        updated_at=decision.received_at,
        finished_at=decision.received_at,
    )


def mutations(decision: Decision, pairs: int) -> list[Mutation]:
    """Give a decision ``pairs`` changes, each followed by the compensation reversing it."""
    run = decision.runs.get()
    start = timezone.now()
    rows = []
    for n in range(pairs):
        change = Mutation(
            org_id=decision.org_id,
            decision=decision,
            run=run,
            step_id=f"step_{n}",
            idempotency_key=step_key(run.idempotency_key, f"step_{n}"),
            platform="meta",
            mutation_type="update_budget",
            payload={"daily_budget_delta_micros": -1_000_000},
            result={"applied_at": "2026-04-22T18:12:11Z"},
            status="success",
            actor_type=decision.requested_by,
            created_at=start + timedelta(milliseconds=2 * n),
        )
        undo = Mutation(
            org_id=decision.org_id,
            decision=decision,
            run=run,
            step_id=f"undo_{n}",
            idempotency_key=compensation_key(run.idempotency_key, f"step_{n}"),
            platform="meta",
            mutation_type="update_budget",
            payload={
                "daily_budget_delta_micros": 1_000_000,
                "compensates_mutation_id": change.mutation_id,
                "compensation_reason": "downstream_step_failure",
            },
            result={"applied_at": "2026-04-22T18:12:12Z"},
            status="rolled_back",
            actor_type="compensation",
            compensates=change,
            created_at=start + timedelta(milliseconds=2 * n + 1),
        )
        rows += [change, undo]
    with transaction.atomic():
        chain.link(*rows)
        return Mutation.objects.bulk_create(rows)
