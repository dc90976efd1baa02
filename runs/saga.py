"""What a run should do next, decided from its definition and its step records alone.

Nothing here touches the database or a platform, so any durable engine can drive the same
workflow definitions with the same decisions: forward steps in order, then, after a step
fails for good, the compensations of the applied steps in reverse order (a LIFO stack).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from mutations.connectors import Change
from runs.retry import RetryPolicy
from runs.workflows import Workflow

FORWARD = "forward"
COMPENSATION = "compensation"
WORKFLOW_COMPLETE = "workflow_complete"
COMPENSATION_COMPLETE = "compensation_complete"
COMPENSATION_INCOMPLETE = "compensation_incomplete"


class StepRecord(Protocol):
    """What the planner needs to know of a step execution (forward or compensation)."""

    step_id: str
    kind: str
    status: str  # pending | succeeded | failed | skipped
    position: int

    @property
    def applied_change(self) -> Change | None: ...

    @property
    def applied_mutation_id(self) -> str | None: ...


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

    @property
    def idempotency_suffix(self) -> str:
        return f":{self.step_id}:compensate" if self.kind == COMPENSATION else f":{self.step_id}"


@dataclass(frozen=True)
class Finish:
    status: str
    current_step_id: str


def next_move(
    workflow: Workflow,
    decision: Mapping[str, Any],
    *,
    compensating: bool,
    failed_step_id: str | None,
    records: Mapping[tuple[str, str], StepRecord],
) -> Action | Finish:
    """Return the next action of a running or compensating run, or how it finishes."""
    if not compensating:
        if failed_step_id:  # the first step failed for good: nothing to undo
            return Finish("failed", failed_step_id)
        for position, step in enumerate(workflow.steps):
            record = records.get((step.id, FORWARD))
            if record is not None and record.status == "succeeded":
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
        return Finish("completed", WORKFLOW_COMPLETE)
    applied = sorted(
        (r for r in records.values() if r.kind == FORWARD and r.status == "succeeded"),
        key=lambda r: r.position,
        reverse=True,
    )
    for forward in applied:
        undo = records.get((forward.step_id, COMPENSATION))
        if undo is not None and undo.status != "pending":
            continue
        step = workflow.step(forward.step_id)
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
    undone = [r for r in records.values() if r.kind == COMPENSATION]
    if all(r.status == "succeeded" for r in undone):
        return Finish("compensated", COMPENSATION_COMPLETE)
    return Finish("compensation_failed", COMPENSATION_INCOMPLETE)
