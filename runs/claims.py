"""Claiming due runs: one short transaction leases a batch to a runner and starts them.

``SELECT ... FOR UPDATE SKIP LOCKED`` lets many runners claim side by side without
waiting on each other; a lease (renewed by the runner's heartbeat) marks the claim, and a
run whose lease expired is claimable again, so a dead runner's work is picked up.
Starting a run happens in the same transaction: take its scope (runs that touch the same
platform objects take turns) and the before-state hash.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from mutations.hashing import canonical_json, snapshot_scope, state_hash
from mutations.models import RuntimeEvent
from mutations.services import DECISION_RUNTIME, record_event
from runs.crashpoints import crash_point
from runs.engine import Engine, RunState, lease_seconds, rollback_lock_seconds
from runs.models import RunStatus, ScopeLock, StepExecution, WorkflowRun
from runs.workflows import get_workflow

logger = logging.getLogger("runs.claims")

MISSING_WORKFLOW_RECHECK = timedelta(seconds=60)
SCOPE_WAIT = timedelta(seconds=0.2)


def scope_keys(scope: dict[str, dict[str, object]]) -> list[str]:
    """Return one lock key per platform object of a run's scope."""
    return sorted(f"{platform}:{canonical_json(target)}" for platform, target in scope.items())


def claim_runs(engine: Engine, limit: int) -> list[RunState]:
    """Lease up to ``limit`` due runs to this runner, start the pending ones, return them."""
    now = timezone.now()
    with transaction.atomic():
        due = WorkflowRun.objects.claimable(now).order_by("next_wake_at")
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        runs = list(due[:limit])
        if not runs:
            return []
        ids = [run.run_id for run in runs]
        lease = {"leased_by": engine.worker_id, "lease_expires_at": now + lease_seconds()}
        WorkflowRun.objects.filter(run_id__in=ids).update(**lease)
        # The previous holder of a compensating run lost its lease: its rollback lock goes too.
        rollback_lock = {
            "rollback_lock_holder": engine.worker_id,
            "rollback_lock_expires_at": now + rollback_lock_seconds(),
        }
        WorkflowRun.objects.filter(run_id__in=ids, status=RunStatus.COMPENSATING).update(
            **rollback_lock
        )
        records: dict[str, dict[tuple[str, str], StepExecution]] = {run_id: {} for run_id in ids}
        for record in StepExecution.objects.filter(run_id__in=ids).select_related("mutation"):
            records[record.run_id][(record.step_id, record.kind)] = record
        claimed = []
        for run in runs:
            for name, value in lease.items():
                setattr(run, name, value)
            if run.status == RunStatus.COMPENSATING:
                for name, value in rollback_lock.items():
                    setattr(run, name, value)
            state = _prepare(run, records[run.run_id], now)
            if state is not None:
                claimed.append(state)
    if claimed:
        crash_point("after_claim")
    return claimed


def _prepare(
    run: WorkflowRun, records: dict[tuple[str, str], StepExecution], now: datetime
) -> RunState | None:
    workflow = get_workflow(run.workflow_id, run.workflow_version)
    if workflow is None:
        logger.warning(
            "run=%s trace=%s workflow %s v%s is not registered in this runner; "
            "leaving the run for a runner that has it",
            run.run_id,
            run.trace_id,
            run.workflow_id,
            run.workflow_version,
        )
        _hand_back(run, now + MISSING_WORKFLOW_RECHECK)
        return None
    state = RunState(run=run, workflow=workflow, records=records)
    if run.holds_scope:
        return state
    if not _take_scope(run, now):
        _hand_back(run, now + SCOPE_WAIT)
        return None
    if run.status == RunStatus.PENDING:
        _start(state, now)
    return state


def _take_scope(run: WorkflowRun, now: datetime) -> bool:
    keys = scope_keys(run.scope)
    try:
        with transaction.atomic():  # a savepoint: a taken key undoes only this run's attempt
            ScopeLock.objects.bulk_create(
                ScopeLock(org_id=run.org_id, key=key, run=run, acquired_at=now) for key in keys
            )
    except IntegrityError:
        logger.debug("run=%s waits for a run holding its scope", run.run_id)
        return False
    WorkflowRun.objects.filter(pk=run.pk).update(holds_scope=True)
    run.holds_scope = True
    return True


def _start(state: RunState, now: datetime) -> None:
    run, workflow = state.run, state.workflow
    before = state_hash(snapshot_scope(org_id=run.org_id, scope=run.scope))
    fields = {
        "status": RunStatus.RUNNING,
        "before_state_hash": before,
        "current_step_id": workflow.steps[0].id,
        "updated_at": now,
    }
    WorkflowRun.objects.filter(pk=run.pk).update(**fields)
    for name, value in fields.items():
        setattr(run, name, value)
    record_event(
        org_id=run.org_id,
        workspace_id=run.workspace_id,
        decision_id=run.decision_id,
        run_id=run.run_id,
        trace_id=run.trace_id,
        surface=DECISION_RUNTIME,
        kind=RuntimeEvent.Kind.RUN_STARTED,
        policy_ids=run.policy_ids,
        before_state_hash=before,
        delta_summary=f"{workflow.id} v{workflow.version} started",
        payload={
            "workflow_run_id": run.run_id,
            "workflow_id": workflow.id,
            "workflow_version": workflow.version,
            "idempotency_key": run.idempotency_key,
        },
    )
    logger.info("run=%s trace=%s started %s", run.run_id, run.trace_id, workflow.id)


def _hand_back(run: WorkflowRun, wake_at: datetime) -> None:
    WorkflowRun.objects.filter(pk=run.pk).update(
        leased_by="", lease_expires_at=None, next_wake_at=wake_at
    )
