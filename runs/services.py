"""Use cases of the execution plane that the control plane calls."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from mutations.rows import insert_rows
from runs.approvals import request_approval
from runs.keys import FIRST_ATTEMPT, run_key
from runs.models import RunStatus, WorkflowRun
from runs.wakeup import notify_runners
from runs.workflows import Workflow


def create_run(
    *,
    org_id: str,
    workspace_id: str,
    decision_id: str,
    decision: dict[str, Any],
    workflow: Workflow,
    requested_by: str,
    trace_id: str,
    policy_ids: list[str],
    payload_hash: str,
    awaiting_approval: bool = False,
    is_drill: bool = False,
    attempt: int = FIRST_ATTEMPT,
    approvals: int = 1,
    approver_roles: tuple[str, ...] = (),
    engine: str | None = None,
) -> WorkflowRun:
    """Create the run of a decision, pinned to the workflow version it starts on; a held
    run waits for ``approvals`` distinct approvers of the decision's payload hash. It runs
    on ``engine`` (default: the BACKSTOP_ENGINE setting)."""
    now = timezone.now()
    if not awaiting_approval:
        notify_runners()  # delivered when the caller's transaction commits
    run = WorkflowRun(
        org_id=org_id,
        workspace_id=workspace_id,
        decision_id=decision_id,
        workflow_id=workflow.id,
        workflow_version=workflow.version,
        status=RunStatus.AWAITING_APPROVAL if awaiting_approval else RunStatus.PENDING,
        awaiting_approval=awaiting_approval,
        idempotency_key=run_key(decision_id, attempt),
        retry_count=attempt - 1,
        requested_by=requested_by,
        input=decision,
        scope=workflow.scope(decision),
        trace_id=trace_id,
        policy_ids=policy_ids,
        is_drill=is_drill,
        next_wake_at=now,
        engine=engine or settings.BACKSTOP_ENGINE,
        created_at=now,
        updated_at=now,
    )
    insert_rows(WorkflowRun, [run])
    if awaiting_approval:
        request_approval(
            run, payload_hash=payload_hash, required=approvals, approver_roles=approver_roles
        )
    return run
