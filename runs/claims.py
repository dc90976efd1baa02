"""Claiming due runs: one short transaction leases a batch to a runner and starts them.

``SELECT ... FOR UPDATE SKIP LOCKED`` lets many runners claim side by side without
waiting on each other; a lease (renewed by the runner's heartbeat) marks the claim, and a
run whose lease expired is claimable again, so a dead runner's work is picked up.
Starting a run happens in the same transaction: take its scope (runs that touch the same
platform objects take turns) and, when its platforms live in the database, its
before-state hash. A run on platforms outside it stays ``pending`` with its scope held:
the runner reads their state by a call in flight, outside any transaction, and records
the start then. The batch shares each query.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from mutations.connectors import PlatformError
from mutations.hashing import canonical_json, snapshot_scopes, state_hash
from mutations.models import RuntimeEvent
from mutations.rows import db_value, insert_rows, one_of, table, update_rows
from runs import evidence
from runs.crashpoints import crash_point
from runs.leases import lease_seconds, rollback_lock_seconds
from runs.models import RUNNABLE_STATUSES, Engine, RunStatus, ScopeLock, StepExecution, WorkflowRun
from runs.state import RunState
from runs.workflows import get_workflow

logger = logging.getLogger("runs.claims")

MISSING_WORKFLOW_RECHECK = timedelta(seconds=60)
SCOPE_WAIT = timedelta(seconds=0.2)
SNAPSHOT_RETRY = timedelta(seconds=2)  # a platform whose state could not be read


def scope_keys(scope: dict[str, dict[str, object]]) -> list[str]:
    """Return one lock key per platform object of a run's scope."""
    return sorted(f"{platform}:{canonical_json(target)}" for platform, target in scope.items())


def claim_runs(worker_id: str, limit: int, *, holding: Collection[str] = ()) -> list[RunState]:
    """Lease up to ``limit`` due runs to this runner, start the pending ones, return them.

    ``holding``: the runs this runner still has in memory. One whose lease ran out (the
    runner was slow to renew it) is not claimed again here: its outcome in flight would
    be recorded from a stale copy; another runner takes it instead.

    The rows are changed once each, at the end (``Claim.save``): a claimed run gets its
    lease (and, compensating, the rollback lock), its scope and its start; a run that
    cannot go on yet is handed back until a later moment.
    """
    now = timezone.now()
    with transaction.atomic():
        runs = _due_runs(now, limit, list(holding))
        if not runs:
            return []
        claim = Claim(worker_id, now)
        states = []
        for run in runs:
            workflow = get_workflow(run.workflow_id, run.workflow_version)
            if workflow is None:
                _log_unknown_version(run)
                claim.hand_back(run, now + MISSING_WORKFLOW_RECHECK)
            else:
                states.append(RunState(run=run, workflow=workflow))
        load_records(states)
        take_scopes(claim, [s.run for s in states if not s.run.holds_scope])
        states = [s for s in states if s.run not in claim.handed_back]
        for state in _start(claim, [s for s in states if _starts_here(s)], now):
            claim.hand_back(state.run, now + SNAPSHOT_RETRY)
        claimed = [s for s in states if s.run not in claim.handed_back]
        for state in claimed:
            claim.lease(state.run)
        claim.save()
    if claimed:
        crash_point("after_claim")
    return claimed


def _due_runs(now: datetime, limit: int, holding: list[str]) -> list[WorkflowRun]:
    """Return (and lock, skipping locked rows) up to ``limit`` claimable runs, the most
    overdue first: runnable by these runners (not on another engine), due, and not leased
    (or the lease has run out)."""
    moment = connection.ops.adapt_datetimefield_value(now)
    statuses = sorted(RUNNABLE_STATUSES)
    params: list[Any] = [*statuses, Engine.BUILTIN, moment, moment]
    sql = (
        f"SELECT * FROM {table(WorkflowRun)} "
        f"WHERE status IN ({', '.join(['%s'] * len(statuses))}) AND engine = %s "
        "AND (leased_by = '' OR lease_expires_at < %s) AND next_wake_at <= %s"
    )
    if holding:
        held, held_params = one_of("run_id", holding)
        sql += f" AND NOT ({held})"
        params += held_params
    sql += " ORDER BY next_wake_at LIMIT %s"
    params.append(limit)
    if connection.features.has_select_for_update_skip_locked:
        sql += " FOR UPDATE SKIP LOCKED"
    return list(WorkflowRun.objects.raw(sql, params))


class Claim:
    """The row changes of one claim, made in memory first and saved together."""

    def __init__(self, worker_id: str, now: datetime) -> None:
        self.worker_id, self.now = worker_id, now
        self.changes: dict[WorkflowRun, dict[str, Any]] = {}
        self.handed_back: set[WorkflowRun] = set()
        self.events: list[RuntimeEvent] = []

    def change(self, run: WorkflowRun, **fields: Any) -> None:
        for name, value in fields.items():
            setattr(run, name, value)
        self.changes.setdefault(run, {}).update(fields)

    def lease(self, run: WorkflowRun) -> None:
        self.change(run, leased_by=self.worker_id, lease_expires_at=self.now + lease_seconds())
        if run.status == RunStatus.COMPENSATING:
            # The previous holder lost its lease: its rollback lock goes too.
            self.change(
                run,
                rollback_lock_holder=self.worker_id,
                rollback_lock_expires_at=self.now + rollback_lock_seconds(),
            )

    def hand_back(self, run: WorkflowRun, wake_at: datetime) -> None:
        self.handed_back.add(run)
        self.change(run, leased_by="", lease_expires_at=None, next_wake_at=wake_at)

    def save(self) -> None:
        update_rows(WorkflowRun, [(run.pk, fields) for run, fields in self.changes.items()])
        insert_rows(RuntimeEvent, self.events)


def _starts_here(state: RunState) -> bool:
    """A pending run whose platforms live in the database starts in its claim."""
    return state.run.status == RunStatus.PENDING and state.reads_state_in_database


def load_records(states: list[RunState]) -> None:
    by_run = {s.run.run_id: s for s in states if s.run.status != RunStatus.PENDING}
    if not by_run:
        return
    for record in StepExecution.objects.filter(run_id__in=by_run).select_related("mutation"):
        by_run[record.run_id].records[(record.step_id, record.kind)] = record


def take_scopes(claim: Claim, runs: list[WorkflowRun]) -> None:
    """Lock the scopes of runs that hold none yet, in one statement that says which keys
    it took; hand back the runs that must wait (a key of theirs is held by another run,
    or by an earlier run of this batch)."""
    if not runs:
        return
    # In one order for every runner, so that two claims wait on each other's keys in
    # turn rather than in a circle.
    rows = sorted(
        ((run, key) for run in runs for key in scope_keys(run.scope)),
        key=lambda row: (row[0].org_id, row[1]),
    )
    values = ", ".join(["(%s, %s, %s, %s)"] * len(rows))
    acquired = db_value(ScopeLock, "acquired_at", claim.now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table(ScopeLock)} (org_id, key, run_id, acquired_at) VALUES {values} "
            "ON CONFLICT (org_id, key) DO NOTHING RETURNING run_id, key",
            [p for run, key in rows for p in (run.org_id, key, run.run_id, acquired)],
        )
        taken = {(run_id, key) for run_id, key in cursor.fetchall()}
    waiting = [r for r in runs if any((r.run_id, k) not in taken for k in scope_keys(r.scope))]
    partly = [r.run_id for r in waiting if any(run_id == r.run_id for run_id, _ in taken)]
    if partly:  # all of a run's keys or none
        ScopeLock.objects.filter(run_id__in=partly).delete()
    for run in runs:
        if run in waiting:
            claim.hand_back(run, claim.now + SCOPE_WAIT)
        else:
            claim.change(run, holds_scope=True)


def _start(claim: Claim, states: list[RunState], now: datetime) -> list[RunState]:
    """Take each run's before-state (the snapshot and its hash) and mark it running,
    reading each platform once for all of them. Return the runs whose platforms could not
    be read: they start on a later claim."""
    snapshots: dict[str, dict[str, object]] = {}
    for org_id in {s.run.org_id for s in states}:
        group = [s.run for s in states if s.run.org_id == org_id]
        try:
            found = snapshot_scopes(org_id=org_id, scopes=[run.scope for run in group])
        except PlatformError as error:
            logger.warning("runs=%s not started: %s", [r.run_id for r in group], error.message)
            continue
        snapshots.update(zip([run.run_id for run in group], found, strict=True))
    for state in states:
        run, workflow = state.run, state.workflow
        if run.run_id not in snapshots:
            continue
        before = snapshots[run.run_id]
        claim.change(
            run,
            status=RunStatus.RUNNING,
            before_state=before,
            before_state_hash=state_hash(before),
            current_step_id=workflow.steps[0].id,
            updated_at=now,
        )
        claim.events.append(evidence.started_event(run, workflow))
        transaction.on_commit(
            partial(
                logger.info, "run=%s trace=%s started %s", run.run_id, run.trace_id, workflow.id
            )
        )
    return [s for s in states if s.run.run_id not in snapshots]


def _log_unknown_version(run: WorkflowRun) -> None:
    logger.warning(
        "run=%s trace=%s workflow %s v%s is not registered in this runner; "
        "leaving the run for a runner that has it",
        run.run_id, run.trace_id, run.workflow_id, run.workflow_version,
    )  # fmt: skip
