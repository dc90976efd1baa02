"""Handing runs to Temporal: a run of the temporal engine that may run (allowed, or
approved) and was not handed over yet starts a workflow whose id is the run id, its plan
pinned from the run's workflow version.

Several workers may hand the same run over at once: Temporal refuses the second start
(the workflow id is taken), and the run is then marked as handed over all the same. A
worker that dies between the start and the mark leaves a run another start finds taken.
A run handed over again (its rollback retried) is marked only once a workflow of its own
started: the one before may still be open, done with the run.
"""

from __future__ import annotations

import asyncio
import logging

from django.conf import settings
from django.utils import timezone
from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from runs.engines.temporal.workflow import WORKFLOW_NAME, Call, Plan, PlannedStep, Retry
from runs.models import RUNNABLE_STATUSES, Engine, RunStatus, WorkflowRun
from runs.retry import RetryPolicy
from runs.workflows import Workflow, get_workflow

logger = logging.getLogger("runs.engines.temporal")

BATCH = 200


def plan_for(run: WorkflowRun, workflow: Workflow) -> Plan:
    """Return the run's plan: its workflow version's steps, pinned for the run's life."""
    return Plan(
        run_id=run.run_id,
        workflow_id=workflow.id,
        workflow_version=workflow.version,
        steps=[
            PlannedStep(
                step_id=step.id,
                forward=Call(name=step.id, timeout=step.timeout, retry=_retry(step.retry)),
                compensation=None
                if step.compensation is None
                else Call(
                    name=step.compensation.id,
                    timeout=step.compensation.timeout,
                    retry=_retry(step.compensation.retry),
                    window=step.compensation.window,
                ),
            )
            for step in workflow.steps
        ],
    )


def _retry(policy: RetryPolicy) -> Retry:
    return Retry(
        max_attempts=policy.max_attempts,
        initial_interval=policy.initial_interval,
        backoff_coefficient=policy.backoff_coefficient,
        maximum_interval=policy.maximum_interval,
    )


def due_plans(limit: int = BATCH) -> list[tuple[Plan, bool]]:
    """Return the plans of runs to hand over, each with whether it is a first start."""
    runs = WorkflowRun.objects.filter(
        engine=Engine.TEMPORAL, status__in=RUNNABLE_STATUSES, dispatched_at__isnull=True
    ).order_by("next_wake_at")[:limit]
    plans = []
    for run in runs:
        workflow = get_workflow(run.workflow_id, run.workflow_version)
        if workflow is None:
            logger.warning(
                "run=%s workflow %s v%s is not registered in this worker; not handed over",
                run.run_id,
                run.workflow_id,
                run.workflow_version,
            )
            continue
        plans.append((plan_for(run, workflow), run.status == RunStatus.PENDING))
    return plans


def mark_dispatched(run_ids: list[str]) -> None:
    WorkflowRun.objects.filter(run_id__in=run_ids, dispatched_at__isnull=True).update(
        dispatched_at=timezone.now()
    )


async def start(client: Client, plan: Plan, *, first: bool) -> bool:
    """Start the run's workflow; return whether the run is handed over.

    A first start is refused when the id was ever used: another worker handed the run over.
    A later start (a rollback retried) needs a workflow of its own, started once the last
    one closed: a last one still open has already seen the run end and will not look at
    it again, so the run is not handed over yet and the next dispatch tries again."""
    try:
        await client.start_workflow(
            WORKFLOW_NAME,
            plan,
            id=plan.run_id,
            task_queue=settings.TEMPORAL_TASK_QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE
            if first
            else WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )
    except WorkflowAlreadyStartedError:
        if not first:
            logger.debug("run=%s waits for its last workflow to close", plan.run_id)
            return False
        logger.info("run=%s already handed to Temporal", plan.run_id)
    return True


async def dispatch(client: Client, plans: list[tuple[Plan, bool]]) -> list[str]:
    """Start the workflows of ``plans``; return the ids of the runs handed over."""
    results = await asyncio.gather(
        *(start(client, plan, first=first) for plan, first in plans), return_exceptions=True
    )
    handed = []
    for (plan, _), result in zip(plans, results, strict=True):
        if isinstance(result, BaseException):
            logger.warning("run=%s not handed to Temporal yet: %s", plan.run_id, result)
        elif result:
            handed.append(plan.run_id)
    return handed
