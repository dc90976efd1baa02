"""Runtime events of a run, built one way: what the run already knows is filled in from it."""

from __future__ import annotations

from typing import Any, TypedDict, Unpack

from mutations.models import RuntimeEvent
from mutations.rows import insert_rows
from mutations.services import Surface, new_event
from runs.models import WorkflowRun


class EventFields(TypedDict, total=False):
    """What an event says beyond its run: who acted, the state hashes, the change."""

    user_id: int | None
    before_state_hash: str | None
    after_state_hash: str | None
    delta_summary: str
    payload: dict[str, Any]


def event_for_run(
    run: WorkflowRun, kind: str, *, surface: Surface, **fields: Unpack[EventFields]
) -> RuntimeEvent:
    """Return an unsaved event of ``run`` with its org, workspace, decision, trace and
    policy ids; save it, or bulk-insert several, in the transaction of the change."""
    return new_event(
        org_id=run.org_id,
        workspace_id=run.workspace_id,
        decision_id=run.decision_id,
        run_id=run.run_id,
        trace_id=run.trace_id,
        policy_ids=run.policy_ids,
        kind=kind,
        surface=surface,
        **fields,
    )


def record_run_event(
    run: WorkflowRun, kind: str, *, surface: Surface, **fields: Unpack[EventFields]
) -> RuntimeEvent:
    """Append one event of ``run``; call it inside the transaction of the change."""
    event = event_for_run(run, kind, surface=surface, **fields)
    insert_rows(RuntimeEvent, [event])
    return event
