"""Operator actions on a run's rollback, and the rollback evidence record (seed 001)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from mutations.models import RuntimeEvent
from mutations.services import Surface
from mutations.timestamps import UTC_FORMAT
from runs.events import record_run_event
from runs.models import RunStatus, StepExecution, WorkflowRun
from runs.saga import ROLLBACK_MODE
from runs.wakeup import notify_runners


class RollbackRefused(Exception):
    """The run is not in a state whose rollback can be retried; the message says why."""


def retry_rollback(
    *,
    run_id: str,
    org_id: str,
    requested_by: str,
    surface: Surface,
    user_id: int | None = None,
) -> WorkflowRun:
    """Send a compensation_failed run back to the runners to retry its failed compensations
    (on Temporal: start the run's workflow again).

    Concurrent requests serialize on the run's row: one moves it to compensating, the
    others find it already compensating and change nothing.
    """
    with transaction.atomic():
        run = WorkflowRun.objects.select_for_update().get(run_id=run_id, org_id=org_id)
        if run.status == RunStatus.COMPENSATING:
            return run
        failed = _retryable_compensations(run)
        now = timezone.now()
        retried = list(failed.values_list("name", flat=True))
        failed.update(
            status=StepExecution.Status.PENDING, attempts=0, next_attempt_at=None, started_at=now
        )
        WorkflowRun.objects.filter(pk=run.pk).update(
            status=RunStatus.COMPENSATING,
            rollback_requested_by=requested_by,
            rollback_started_at=now,
            current_step_id=retried[0],
            after_state=None,
            after_state_hash=None,
            finished_at=None,
            next_wake_at=now,
            # A run on Temporal is handed over again: its workflow ended with the run.
            dispatched_at=None,
            updated_at=now,
        )
        record_run_event(
            run,
            RuntimeEvent.Kind.ROLLBACK_STARTED,
            surface=surface,
            user_id=user_id,
            delta_summary=f"{requested_by} retried the rollback: {', '.join(retried)}",
            payload={
                "requested_by": requested_by,
                "retried": retried,
                "rollback_mode": ROLLBACK_MODE,
            },
        )
        notify_runners()
    run.refresh_from_db()
    return run


def _retryable_compensations(run: WorkflowRun) -> QuerySet[StepExecution]:
    """Return the run's failed compensations, or raise RollbackRefused saying why there
    is nothing to retry."""
    if run.status != RunStatus.COMPENSATION_FAILED:
        raise RollbackRefused(
            f"Run {run.run_id} is {run.status}; only a compensation_failed run's "
            "rollback can be retried."
        )
    failed = run.steps.filter(
        kind=StepExecution.Kind.COMPENSATION, status=StepExecution.Status.FAILED
    )
    if not failed.exists():
        skipped = list(
            run.steps.filter(status=StepExecution.Status.SKIPPED).values_list("step_id", flat=True)
        )
        raise RollbackRefused(
            f"Nothing to retry on run {run.run_id}: {', '.join(skipped)} declare no "
            "compensation and must be undone by hand."
        )
    return failed


def rollback_evidence(run: WorkflowRun, steps: list[StepExecution] | None = None) -> dict[str, Any]:
    """Return who dispatched what, which policy matched, and which compensation ran.

    Pass the run's steps (with ``compensates`` loaded) to spare the query.
    """
    if steps is None:
        steps = list(run.steps.select_related("compensates").order_by("started_at", "id"))
    compensations = [s for s in steps if s.kind == StepExecution.Kind.COMPENSATION]
    finished = run.status in (RunStatus.COMPENSATED, RunStatus.COMPENSATION_FAILED)
    remaining = [
        _left_to_undo(c) for c in compensations if c.status != StepExecution.Status.SUCCEEDED
    ]
    return {
        "run_id": run.run_id,
        "decision_id": run.decision_id,
        "workflow_id": run.workflow_id,
        "status": run.status,
        "failed_step_id": run.failed_step_id,
        "matched_policy_ids": run.policy_ids,
        "requested_by": run.requested_by,
        "rollback_triggered": run.rollback_started_at is not None,
        "rollback_reason": run.rollback_reason or None,
        "rollback_requested_by": run.rollback_requested_by or None,
        "rollback_mode": ROLLBACK_MODE,
        "compensations_dispatched": sum(
            c.status in (StepExecution.Status.SUCCEEDED, StepExecution.Status.FAILED)
            for c in compensations
        ),
        "compensations_skipped": sum(
            c.status == StepExecution.Status.SKIPPED for c in compensations
        ),
        "compensations": [
            _compensation_entry(order, c) for order, c in enumerate(compensations, start=1)
        ],
        "remaining": remaining if run.status == RunStatus.COMPENSATION_FAILED else [],
        "before_state_hash": run.before_state_hash,
        "after_state_hash": run.after_state_hash,
        "rollback_started_at": _utc(run.rollback_started_at),
        "rollback_finished_at": _utc(run.finished_at) if finished else None,
    }


def _compensation_entry(order: int, compensation: StepExecution) -> dict[str, Any]:
    """Return one compensation of the evidence record, in the order it was dispatched."""
    return {
        "order": order,
        "compensation_id": compensation.name,
        "step_id": compensation.step_id,
        "status": compensation.status,
        "attempts": compensation.attempts,
        "compensates_mutation_id": compensation.compensates_id,
        "mutation_id": compensation.mutation_id,
        "idempotency_key": compensation.idempotency_key,
        "reason": compensation.skip_reason or compensation.last_error or None,
    }


def _left_to_undo(compensation: StepExecution) -> dict[str, Any]:
    """Return what a person must undo by hand for a compensation that did not succeed."""
    applied = compensation.compensates
    return {
        "step_id": compensation.step_id,
        "compensation_id": compensation.name,
        "compensates_mutation_id": compensation.compensates_id,
        "platform": applied.platform if applied else None,
        "applied_change": applied.payload if applied else None,
        "target": applied.target if applied else None,
        "reason": compensation.skip_reason or compensation.last_error,
    }


def _utc(moment: Any) -> str | None:
    return moment.strftime(UTC_FORMAT) if moment else None
