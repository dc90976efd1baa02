"""The evidence of a step's outcome, built unsaved: its Mutation Log row and its runtime
events. ``runs.records`` inserts them in the transaction of the outcome they record."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Unpack

from mutations.connectors import PlatformError, get_connector
from mutations.models import Mutation, RuntimeEvent
from mutations.services import Surface
from runs.events import EventFields, event_for_run
from runs.models import RunStatus, StepExecution, WorkflowRun
from runs.saga import ROLLBACK_MODE, Action
from runs.state import Attempt, RunState
from runs.workflows import Workflow

DOWNSTREAM_FAILURE = "downstream_step_failure"


def mutation_for(
    run: WorkflowRun,
    action: Action,
    attempt: Attempt,
    *,
    result: dict[str, Any] | None,
    error_message: str | None,
    receipt: dict[str, Any],
) -> Mutation:
    """Return the Mutation Log row of an attempt: applied when ``error_message`` is None.

    A compensation's row says which mutation it undoes and why.
    """
    payload = dict(action.change.payload)
    if action.kind == StepExecution.Kind.COMPENSATION:
        payload["compensates_mutation_id"] = action.compensates_mutation_id
        payload["compensation_reason"] = run.rollback_reason or DOWNSTREAM_FAILURE
        status = Mutation.Status.ROLLED_BACK if error_message is None else Mutation.Status.FAILED
        actor = Mutation.COMPENSATION_ACTOR
    else:
        status = Mutation.Status.SUCCESS if error_message is None else Mutation.Status.FAILED
        actor = run.requested_by
    return Mutation(
        org_id=run.org_id,
        decision_id=run.decision_id,
        run=run,
        step_id=action.name,
        idempotency_key=attempt.key,
        platform=action.change.platform,
        mutation_type=action.change.mutation_type,
        target=action.change.target,
        payload=payload,
        result=result,
        status=status,
        actor_type=actor,
        compensates_id=action.compensates_mutation_id,
        created_at=attempt.started_at,
        error_message=error_message,
        receipt=receipt,
    )


def _engine_event(run: WorkflowRun, kind: str, **fields: Unpack[EventFields]) -> RuntimeEvent:
    return event_for_run(run, kind, surface=Surface.DECISION_RUNTIME, **fields)


def started_event(run: WorkflowRun, workflow: Workflow) -> RuntimeEvent:
    """Return the event of a run's start, with the state hash of its scope before it."""
    return _engine_event(
        run,
        RuntimeEvent.Kind.RUN_STARTED,
        before_state_hash=run.before_state_hash,
        delta_summary=f"{workflow.id} v{workflow.version} started",
        payload={
            "workflow_run_id": run.run_id,
            "workflow_id": workflow.id,
            "workflow_version": workflow.version,
            "idempotency_key": run.idempotency_key,
        },
    )


def applied_event(
    run: WorkflowRun, action: Action, *, attempt: int, key: str, mutation_id: str
) -> RuntimeEvent:
    """Return the event of a forward step or a compensation the platform applied."""
    if action.kind == StepExecution.Kind.COMPENSATION:
        kind = RuntimeEvent.Kind.COMPENSATION_APPLIED
        undoes = {"compensates_mutation_id": action.compensates_mutation_id}
    else:
        kind, undoes = RuntimeEvent.Kind.STEP_SUCCEEDED, {}
    return _engine_event(
        run,
        kind,
        delta_summary=f"{action.name} applied on {action.change.platform}",
        payload={
            "step_id": action.name,
            "attempt": attempt,
            "mutation_id": mutation_id,
            "idempotency_key": key,
            **undoes,
        },
    )


def retry_event(
    run: WorkflowRun,
    action: Action,
    error: PlatformError,
    *,
    attempt: int,
    now: datetime,
    wake_at: datetime,
) -> RuntimeEvent:
    """Return the event of a failed attempt that will be tried again at ``wake_at``."""
    return _engine_event(
        run,
        RuntimeEvent.Kind.STEP_RETRY_SCHEDULED,
        delta_summary=f"{action.name} attempt {attempt} failed ({error.kind}); "
        f"retrying in {(wake_at - now).total_seconds():.1f}s",
        payload={
            "step_id": action.name,
            "attempt": attempt,
            "error": error.message,
            "error_kind": error.kind,
            "next_attempt_at": wake_at.isoformat(),
        },
    )


def step_failed_event(run: WorkflowRun, action: Action, error: PlatformError) -> RuntimeEvent:
    """Return the event of a forward step that failed for good."""
    return _engine_event(
        run,
        RuntimeEvent.Kind.STEP_FAILED,
        delta_summary=f"{action.name} failed for good ({error.kind})",
        payload={"step_id": action.name, "error": error.message, "error_kind": error.kind},
    )


def rollback_started_event(run: WorkflowRun, action: Action) -> RuntimeEvent:
    """Return the event of a rollback started because ``action`` failed for good."""
    return _engine_event(
        run,
        RuntimeEvent.Kind.ROLLBACK_STARTED,
        delta_summary=f"Undoing earlier steps in reverse order after {action.name} failed",
        payload={"failed_step_id": action.name, "rollback_mode": ROLLBACK_MODE},
    )


def compensation_failed_event(
    run: WorkflowRun, action: Action, error: PlatformError, *, attempts: int
) -> RuntimeEvent:
    """Return the event of a compensation that failed for good."""
    return _engine_event(
        run,
        RuntimeEvent.Kind.COMPENSATION_FAILED,
        delta_summary=f"{action.name} could not undo "
        f"{action.compensates_mutation_id} ({error.kind})",
        payload={
            "step_id": action.name,
            "attempts": attempts,
            "error": error.message,
            "compensates_mutation_id": action.compensates_mutation_id,
        },
    )


def skipped_event(run: WorkflowRun, action: Action) -> RuntimeEvent:
    """Return the event of a compensation skipped because its step declares none."""
    return _engine_event(
        run,
        RuntimeEvent.Kind.COMPENSATION_SKIPPED,
        delta_summary=f"{action.step_id} has no compensation: {action.skip_reason}",
        payload={
            "step_id": action.step_id,
            "reason": action.skip_reason,
            "compensates_mutation_id": action.compensates_mutation_id,
        },
    )


def finished_event(
    run: WorkflowRun,
    status: str,
    *,
    after_state_hash: str,
    records: Mapping[tuple[str, str], StepExecution],
) -> RuntimeEvent:
    """Return the event of a run's end: its state hashes, what was undone, and the one
    line the timeline shows."""
    compensations = [r for r in records.values() if r.kind == StepExecution.Kind.COMPENSATION]
    undone = [r.compensates_id for r in compensations if r.status == StepExecution.Status.SUCCEEDED]
    return _engine_event(
        run,
        RuntimeEvent.Kind.RUN_FINISHED,
        before_state_hash=run.before_state_hash,
        after_state_hash=after_state_hash,
        delta_summary=_finish_summary(run, status, records, compensations),
        payload={
            "workflow_run_id": run.run_id,
            "terminal_status": status,
            "failed_step_id": run.failed_step_id,
            "compensated_mutations": undone,
        },
    )


def _finish_summary(
    run: WorkflowRun,
    status: str,
    records: Mapping[tuple[str, str], StepExecution],
    compensations: list[StepExecution],
) -> str:
    if status == RunStatus.COMPLETED:
        return f"Workflow completed: {len(records)} step(s) applied"
    failed = records.get((run.failed_step_id or "", StepExecution.Kind.FORWARD))
    cause = ""
    if failed is not None and failed.mutation is not None:
        api = get_connector(failed.mutation.platform).api_name
        kind = failed.errors[-1]["kind"] if failed.errors else "error"
        cause = f" ({api} {kind})"
    if status == RunStatus.COMPENSATED:
        if run.rollback_requested_by:
            return (
                f"Workflow compensated after {run.rollback_requested_by} retried the "
                f"rollback{cause}"
            )
        return f"Workflow compensated after downstream step failure{cause}"
    if status == RunStatus.FAILED:
        return f"Workflow failed at {run.failed_step_id}{cause}; nothing to undo"
    left = [r.name for r in compensations if r.status != StepExecution.Status.SUCCEEDED]
    return f"Compensation incomplete after step failure{cause}: {', '.join(left)} left for a person"


def errors_with(
    state: RunState, action: Action, attempt: Attempt, error: PlatformError, now: datetime
) -> list[dict[str, Any]]:
    """Return the step's error history with this attempt's error added."""
    execution = state.records.get((action.step_id, action.kind))
    return [
        *(execution.errors if execution else []),
        {
            "attempt": attempt.number,
            "kind": error.kind,
            "message": error.message,
            "at": now.isoformat(),
            **error.receipt,
        },
    ]
