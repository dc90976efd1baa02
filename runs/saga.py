"""What a run should do next, decided from its definition and its step records alone.

Nothing here touches the database or a platform, so any durable engine can drive the same
workflow definitions with the same decisions: forward steps in order, then, after a step
fails for good, the compensations of the applied steps in reverse order (a LIFO stack).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from mutations.connectors import Change
from runs.keys import compensation_key, step_key
from runs.models import RunStatus, StepExecution
from runs.retry import RetryPolicy
from runs.workflows import Step, Workflow

FORWARD = StepExecution.Kind.FORWARD
COMPENSATION = StepExecution.Kind.COMPENSATION
WORKFLOW_COMPLETE = "workflow_complete"
COMPENSATION_COMPLETE = "compensation_complete"
COMPENSATION_INCOMPLETE = "compensation_incomplete"

ROLLBACK_MODE = "lifo_stack"  # compensations run in reverse order of the steps applied


class StepRecord(Protocol):
    """What the planner needs to know of a step execution (forward or compensation)."""

    step_id: str
    kind: str
    status: str  # a StepExecution.Status: pending | succeeded | failed | skipped
    position: int
    next_attempt_at: datetime | None  # set while a failed attempt waits for its retry

    @property
    def applied_change(self) -> Change | None: ...

    @property
    def applied_mutation_id(self) -> str | None: ...


Records = Mapping[tuple[str, str], StepRecord]


@dataclass(frozen=True)
class Action:
    """One platform call the run needs next: a forward step or a compensation."""

    step_id: str  # the forward step, for both kinds
    name: str  # the forward step's or the compensation's id
    kind: str
    position: int
    change: Change
    retry: RetryPolicy
    timeout: float
    compensates_mutation_id: str | None = None
    skip_reason: str = ""  # a compensation that cannot run: why the step has none
    window: float | None = None  # compensations only: seconds before giving up

    def idempotency_key(self, run_key: str) -> str:
        """Return the key of this call within the run whose key is ``run_key``."""
        if self.kind == COMPENSATION:
            return compensation_key(run_key, self.step_id)
        return step_key(run_key, self.step_id)


@dataclass(frozen=True)
class Wait:
    """The next action's last attempt failed and may be retried, but not before ``until``."""

    until: datetime


@dataclass(frozen=True)
class Finish:
    status: RunStatus
    current_step_id: str


def next_move(
    workflow: Workflow,
    decision: Mapping[str, Any],
    *,
    compensating: bool,
    failed_step_id: str | None,
    records: Records,
    now: datetime,
) -> Action | Wait | Finish:
    """Return the next action of a running or compensating run, when it must wait for a
    retry that is not due at ``now``, or how it finishes."""
    if compensating:
        move = _next_compensation(workflow, decision, records)
    elif failed_step_id:  # the first step failed for good: nothing to undo
        return Finish(RunStatus.FAILED, failed_step_id)
    else:
        move = _next_forward(workflow, decision, records)
    if isinstance(move, Action):
        record = records.get((move.step_id, move.kind))
        due = record.next_attempt_at if record is not None else None
        if due is not None and due > now:
            return Wait(due)
    return move


def _next_forward(
    workflow: Workflow, decision: Mapping[str, Any], records: Records
) -> Action | Finish:
    """Return the first step not yet applied, in the workflow's order."""
    for position, step in enumerate(workflow.steps):
        record = records.get((step.id, FORWARD))
        if record is not None and record.status == StepExecution.Status.SUCCEEDED:
            continue
        return Action(
            step_id=step.id,
            name=step.id,
            kind=FORWARD,
            position=position,
            change=step.build(decision),
            retry=step.retry,
            timeout=step.timeout,
        )
    return Finish(RunStatus.COMPLETED, WORKFLOW_COMPLETE)


def _next_compensation(
    workflow: Workflow, decision: Mapping[str, Any], records: Records
) -> Action | Finish:
    """Return the undo of the latest applied step not yet undone (last in, first out)."""
    applied = sorted(
        (
            r
            for r in records.values()
            if r.kind == FORWARD and r.status == StepExecution.Status.SUCCEEDED
        ),
        key=lambda r: r.position,
        reverse=True,
    )
    for forward in applied:
        undo = records.get((forward.step_id, COMPENSATION))
        if undo is not None and undo.status != StepExecution.Status.PENDING:
            continue
        return _undo(workflow.step(forward.step_id), forward, decision)
    undone = [r for r in records.values() if r.kind == COMPENSATION]
    if all(r.status == StepExecution.Status.SUCCEEDED for r in undone):
        return Finish(RunStatus.COMPENSATED, COMPENSATION_COMPLETE)
    return Finish(RunStatus.COMPENSATION_FAILED, COMPENSATION_INCOMPLETE)


def _undo(step: Step, forward: StepRecord, decision: Mapping[str, Any]) -> Action:
    """Return the compensation of an applied step; a step without one is skipped, saying why."""
    change = forward.applied_change
    assert change is not None, "a succeeded step always has its applied change"
    compensation = step.compensation
    if compensation is None:
        return Action(
            step_id=step.id,
            name=step.id,
            kind=COMPENSATION,
            position=forward.position,
            change=change,
            retry=step.retry,
            timeout=step.timeout,
            compensates_mutation_id=forward.applied_mutation_id,
            skip_reason=step.no_rollback_reason,
        )
    return Action(
        step_id=step.id,
        name=compensation.id,
        kind=COMPENSATION,
        position=forward.position,
        change=compensation.inverse(decision, change),
        retry=compensation.retry,
        timeout=compensation.timeout,
        compensates_mutation_id=forward.applied_mutation_id,
        window=compensation.window,
    )
