"""Claiming due runs: one short transaction leases a batch to a runner and starts them.

``SELECT ... FOR UPDATE SKIP LOCKED`` lets many runners claim side by side without
waiting on each other; a lease (renewed by the runner's heartbeat) marks the claim, and a
run whose lease expired is claimable again, so a dead runner's work is picked up.
Starting a run happens in the same transaction: take its scope (runs that touch the same
platform objects take turns) and its before-state hash. The batch shares each query.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from mutations.connectors import PlatformError
from mutations.hashing import canonical_json, snapshot_scopes, state_hash
from mutations.models import RuntimeEvent
from mutations.services import Surface
from runs.crashpoints import crash_point
from runs.engine import Engine
from runs.events import event_for_run
from runs.models import RunStatus, ScopeLock, StepExecution, WorkflowRun
from runs.records import lease_seconds, rollback_lock_seconds
from runs.state import RunState
from runs.workflows import get_workflow

logger = logging.getLogger("runs.claims")

MISSING_WORKFLOW_RECHECK = timedelta(seconds=60)
SCOPE_WAIT = timedelta(seconds=0.2)
SNAPSHOT_RETRY = timedelta(seconds=2)  # a platform whose state could not be read


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
        _lease(runs, engine.worker_id, now)
        states, missing = [], []
        for run in runs:
            workflow = get_workflow(run.workflow_id, run.workflow_version)
            if workflow is None:
                missing.append(run)
            else:
                states.append(RunState(run=run, workflow=workflow))
        if missing:
            _leave_unknown_versions(missing, now)
        _load_records(states)
        waiting = _take_scopes([s for s in states if not s.run.holds_scope], now)
        if waiting:
            _hand_back(waiting, now + SCOPE_WAIT)
        claimed = [s for s in states if s.run not in waiting]
        unreachable = _start([s for s in claimed if s.run.status == RunStatus.PENDING], now)
        if unreachable:
            _hand_back([s.run for s in unreachable], now + SNAPSHOT_RETRY)
            claimed = [s for s in claimed if s not in unreachable]
    if claimed:
        crash_point("after_claim")
    return claimed


def _lease(runs: list[WorkflowRun], worker_id: str, now: datetime) -> None:
    lease = {"leased_by": worker_id, "lease_expires_at": now + lease_seconds()}
    WorkflowRun.objects.filter(run_id__in=[r.run_id for r in runs]).update(**lease)
    # The previous holder of a compensating run lost its lease: its rollback lock goes too.
    rollback_lock = {
        "rollback_lock_holder": worker_id,
        "rollback_lock_expires_at": now + rollback_lock_seconds(),
    }
    compensating = [r for r in runs if r.status == RunStatus.COMPENSATING]
    if compensating:
        WorkflowRun.objects.filter(run_id__in=[r.run_id for r in compensating]).update(
            **rollback_lock
        )
    for run in runs:
        for name, value in (lease | (rollback_lock if run in compensating else {})).items():
            setattr(run, name, value)


def _load_records(states: list[RunState]) -> None:
    by_run = {s.run.run_id: s for s in states if s.run.status != RunStatus.PENDING}
    if not by_run:
        return
    for record in StepExecution.objects.filter(run_id__in=by_run).select_related("mutation"):
        by_run[record.run_id].records[(record.step_id, record.kind)] = record


def _take_scopes(states: list[RunState], now: datetime) -> list[WorkflowRun]:
    """Lock the scopes of runs that hold none yet; return the runs that must wait."""
    if not states:
        return []
    wanted = {s.run.run_id: scope_keys(s.run.scope) for s in states}
    taken = set(
        ScopeLock.objects.filter(
            org_id__in={s.run.org_id for s in states},
            key__in={k for keys in wanted.values() for k in keys},
        ).values_list("org_id", "key")
    )
    waiting, locks = [], []
    for state in states:
        run = state.run
        keys = {(run.org_id, key) for key in wanted[run.run_id]}
        if keys & taken:
            waiting.append(run)
            continue
        taken |= keys  # two runs of one batch may share a scope too
        locks += [ScopeLock(org_id=run.org_id, key=k, run=run, acquired_at=now) for _, k in keys]
    try:
        with transaction.atomic():  # a savepoint: a race lost here is retried one run at a time
            ScopeLock.objects.bulk_create(locks)
    except IntegrityError:
        return waiting + _take_scopes_one_by_one([s for s in states if s.run not in waiting], now)
    _mark_holding([s.run for s in states if s.run not in waiting])
    return waiting


def _take_scopes_one_by_one(states: list[RunState], now: datetime) -> list[WorkflowRun]:
    waiting = []
    for state in states:
        run = state.run
        try:
            with transaction.atomic():
                ScopeLock.objects.bulk_create(
                    ScopeLock(org_id=run.org_id, key=key, run=run, acquired_at=now)
                    for key in scope_keys(run.scope)
                )
        except IntegrityError:
            waiting.append(run)
        else:
            _mark_holding([run])
    return waiting


def _mark_holding(runs: list[WorkflowRun]) -> None:
    if runs:
        WorkflowRun.objects.filter(run_id__in=[r.run_id for r in runs]).update(holds_scope=True)
    for run in runs:
        run.holds_scope = True


def _start(states: list[RunState], now: datetime) -> list[RunState]:
    """Take each run's before-state hash and mark it running, all in shared queries.

    Return the runs whose platforms could not be read: they start on a later claim.
    """
    if not states:
        return []
    snapshots: dict[str, dict[str, object]] = {}
    for org_id in {s.run.org_id for s in states}:
        group = [s.run for s in states if s.run.org_id == org_id]
        try:
            found = snapshot_scopes(org_id=org_id, scopes=[run.scope for run in group])
        except PlatformError as error:
            logger.warning("runs=%s not started: %s", [r.run_id for r in group], error.message)
            continue
        snapshots.update(zip([run.run_id for run in group], found, strict=True))
    unreachable = [s for s in states if s.run.run_id not in snapshots]
    states = [s for s in states if s.run.run_id in snapshots]
    events = []
    for state in states:
        run, workflow = state.run, state.workflow
        run.status = RunStatus.RUNNING
        run.before_state_hash = state_hash(snapshots[run.run_id])
        run.current_step_id = workflow.steps[0].id
        run.updated_at = now
        events.append(
            event_for_run(
                run,
                RuntimeEvent.Kind.RUN_STARTED,
                surface=Surface.DECISION_RUNTIME,
                before_state_hash=run.before_state_hash,
                delta_summary=f"{workflow.id} v{workflow.version} started",
                payload={
                    "workflow_run_id": run.run_id,
                    "workflow_id": workflow.id,
                    "workflow_version": workflow.version,
                    "idempotency_key": run.idempotency_key,
                },
            )
        )
        logger.info("run=%s trace=%s started %s", run.run_id, run.trace_id, workflow.id)
    WorkflowRun.objects.bulk_update(
        [s.run for s in states],
        ["status", "before_state_hash", "current_step_id", "updated_at"],
    )
    RuntimeEvent.objects.bulk_create(events)
    return unreachable


def _leave_unknown_versions(runs: list[WorkflowRun], now: datetime) -> None:
    for run in runs:
        logger.warning(
            "run=%s trace=%s workflow %s v%s is not registered in this runner; "
            "leaving the run for a runner that has it",
            run.run_id, run.trace_id, run.workflow_id, run.workflow_version,
        )  # fmt: skip
    _hand_back(runs, now + MISSING_WORKFLOW_RECHECK)


def _hand_back(runs: list[WorkflowRun], wake_at: datetime) -> None:
    WorkflowRun.objects.filter(run_id__in=[r.run_id for r in runs]).update(
        leased_by="", lease_expires_at=None, next_wake_at=wake_at
    )
