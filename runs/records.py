"""The engine's writes: the outcomes of many steps, recorded in one fenced transaction.

This is the one place that writes what a platform call did: the Mutation Log row, the
step execution, the run's state, its events, and the run's end when nothing is left to
do. A runner records the outcomes it has gathered as a group (``Recorder.recording``):
one transaction that first locks the group's runs and keeps only those this runner still
holds (its lease and, while compensating, its rollback lock), so a runner that lost a run
writes nothing for it; the writes then go out as one statement per table
(``runs.batch``). Each write also updates the runner's copy of the run (``RunState``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import partial
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from mutations.connectors import Applied, PlatformError
from mutations.hashing import snapshot_scopes, state_hash
from mutations.models import Mutation, RuntimeEvent
from mutations.rows import for_update, one_of, table
from runs import evidence, saga
from runs.batch import Batch
from runs.leases import lease_seconds, rollback_lock_seconds
from runs.models import RunStatus, StepExecution, WorkflowRun
from runs.saga import Action, Finish
from runs.state import Attempt, RunState

# The engine's outcomes, logged under the engine's name where they are written.
logger = logging.getLogger("runs.engine")

# The state of a run's scope, by platform (``mutations.hashing.snapshot_scopes``): kept on
# the run beside its hash, so that pages show the values the hash proves.
Snapshot = dict[str, Any]

# Called in a group's transaction with the run_finished events of the runs that ended in
# it, before they are written: the control plane writes its notification outbox there.
on_runs_ended: list[Callable[[list[RuntimeEvent]], None]] = []


class Recorder:
    """Write the outcomes of one runner's platform calls, a group at a time, fenced by the
    runner's leases. Call the ``record_*`` methods inside ``recording``, for the runs it
    yields. Those of a step's outcome return True when the run was handed back (it
    finished, or waits for a retry), False when this runner goes on driving it."""

    def __init__(self, *, worker_id: str) -> None:
        self.worker_id = worker_id
        self._batch: Batch | None = None
        # Runs that end in this group, their scopes' state read for all of them at once.
        self._ending: list[tuple[RunState, Finish, datetime, dict[str, Any]]] = []

    @contextmanager
    def recording(self, states: list[RunState]) -> Iterator[set[str]]:
        """Open one transaction for the outcomes of ``states``; yield the ids of the runs
        this runner still holds (record only theirs); write everything when the block ends.

        Their rows stay locked until the commit, so no other runner can take one of them
        meanwhile. On an error nothing is written, and the states in memory are stale.
        """
        with transaction.atomic():
            held = self._fence(states)
            self._batch = Batch()
            try:
                yield held
                self._finish_ending()
                ended = [e for e in self._batch.events if e.kind == RuntimeEvent.Kind.RUN_FINISHED]
                for hook in on_runs_ended if ended else ():
                    hook(ended)
                self._batch.flush()
            finally:
                self._batch = None
                self._ending.clear()

    def _fence(self, states: list[RunState]) -> set[str]:
        ours, params = one_of("run_id", [s.run.run_id for s in states])
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT run_id, rollback_lock_holder FROM {table(WorkflowRun)} "
                f"WHERE {ours} AND leased_by = %s{for_update()}",
                [*params, self.worker_id],
            )
            rows = cursor.fetchall()
        compensating = {s.run.run_id for s in states if s.run.status == RunStatus.COMPENSATING}
        return {
            run_id
            for run_id, holder in rows
            if run_id not in compensating or holder == self.worker_id
        }

    @property
    def batch(self) -> Batch:
        if self._batch is None:
            raise RuntimeError("Record outcomes inside Recorder.recording().")
        return self._batch

    # ---- outcomes ------------------------------------------------------------------------

    def record_applied(
        self, state: RunState, action: Action, attempt: Attempt, applied: Applied
    ) -> bool:
        """Record a change the platform applied: its mutation, the step succeeded, its
        event, and the run's progress (or its end)."""
        run = state.run
        now = timezone.now()
        mutation = self._append_mutation(
            run, action, attempt, result=applied.result, receipt=applied.receipt
        )
        self._save_execution(
            state,
            action,
            attempt.key,
            attempt.started_at,
            status=StepExecution.Status.SUCCEEDED,
            attempts=attempt.number,
            mutation=mutation,
            next_attempt_at=None,
            finished_at=now,
        )
        self.batch.events.append(
            evidence.applied_event(
                run,
                action,
                attempt=attempt.number,
                key=attempt.key,
                mutation_id=mutation.mutation_id,
            )
        )
        done = self._continue_or_finish(state, now, current_step_id=action.name)
        _log_outcome(run, action, attempt, "applied", f"mutation={mutation.mutation_id}")
        return done

    def record_retry(
        self,
        state: RunState,
        action: Action,
        attempt: Attempt,
        error: PlatformError,
        *,
        now: datetime,
        wake_at: datetime,
    ) -> bool:
        """Record a failed attempt that will be tried again at ``wake_at``, and hand the run
        back until then, so any runner may take it."""
        run = state.run
        self._save_error(state, action, attempt, error, now, next_attempt_at=wake_at)
        self.batch.events.append(
            evidence.retry_event(
                run, action, error, attempt=attempt.number, now=now, wake_at=wake_at
            )
        )
        self._save_run(
            state,
            now,
            current_step_id=action.name,
            next_wake_at=wake_at,
            leased_by="",
            lease_expires_at=None,
        )
        _log_outcome(run, action, attempt, "retry_scheduled", f"error={error.message!r}")
        return True

    def record_failure(
        self,
        state: RunState,
        action: Action,
        attempt: Attempt,
        error: PlatformError,
        *,
        now: datetime,
    ) -> bool:
        """Record an action that failed for good: its failed mutation and step, then the
        start of the rollback (a forward step) or the run's progress (a compensation)."""
        run = state.run
        mutation = self._append_mutation(
            run, action, attempt, error_message=error.message, receipt=error.receipt
        )
        self._save_error(
            state,
            action,
            attempt,
            error,
            now,
            status=StepExecution.Status.FAILED,
            mutation=mutation,
            next_attempt_at=None,
            finished_at=now,
        )
        if action.kind == saga.FORWARD:
            done = self._fail_forward(state, action, error, now)
        else:
            self.batch.events.append(
                evidence.compensation_failed_event(run, action, error, attempts=attempt.number)
            )
            done = self._continue_or_finish(state, now, current_step_id=action.name)
        _log_outcome(run, action, attempt, "failed", f"error={error.message!r}")
        return done

    def record_skip(self, state: RunState, action: Action) -> bool:
        """Record a compensation that cannot run (its step declares none) and why."""
        run = state.run
        now = timezone.now()
        self._save_execution(
            state,
            action,
            action.idempotency_key(run.idempotency_key),
            now,
            status=StepExecution.Status.SKIPPED,
            skip_reason=action.skip_reason,
            finished_at=now,
        )
        self.batch.events.append(evidence.skipped_event(run, action))
        done = self._continue_or_finish(state, now, current_step_id=action.step_id)
        _log_committed(
            run,
            "run=%s trace=%s step=%s kind=compensation outcome=skipped reason=%r",
            run.run_id,
            run.trace_id,
            action.step_id,
            action.skip_reason,
        )
        return done

    def record_start(self, state: RunState, before: Snapshot) -> None:
        """Record that a claimed run started, with the state of its scope before it (the
        snapshot and its hash)."""
        run, now = state.run, timezone.now()
        self._save_run(
            state,
            now,
            status=RunStatus.RUNNING,
            before_state=before,
            before_state_hash=state_hash(before),
            current_step_id=state.workflow.steps[0].id,
        )
        self.batch.events.append(evidence.started_event(run, state.workflow))

    def record_finish(self, state: RunState, finish: Finish, after: Snapshot | None = None) -> None:
        """Record the end of a run whose last outcome was recorded without it: its scope's
        state was read by a call (platforms outside the database: ``after``), or the
        runner stopped in between (read here)."""
        if after is None:
            self._ending.append((state, finish, timezone.now(), {}))
        else:
            self._finish(state, finish, timezone.now(), after)

    def release(self, state: RunState, wake_at: datetime) -> None:
        """Hand the run back until ``wake_at``, when any runner may take it."""
        self._save_run(
            state, timezone.now(), next_wake_at=wake_at, leased_by="", lease_expires_at=None
        )

    # ---- run state (inside a recording) --------------------------------------------------

    def _fail_forward(
        self, state: RunState, action: Action, error: PlatformError, now: datetime
    ) -> bool:
        run = state.run
        self.batch.events.append(evidence.step_failed_event(run, action, error))
        applied = any(
            r.kind == saga.FORWARD and r.status == StepExecution.Status.SUCCEEDED
            for r in state.records.values()
        )
        if not applied:
            return self._end(
                state, Finish(RunStatus.FAILED, action.name), now, failed_step_id=action.name
            )
        self._save_run(
            state,
            now,
            status=RunStatus.COMPENSATING,
            failed_step_id=action.name,
            current_step_id=action.name,
            rollback_reason=evidence.DOWNSTREAM_FAILURE,
            rollback_started_at=now,
            rollback_lock_holder=self.worker_id,
            rollback_lock_expires_at=now + rollback_lock_seconds(),
        )
        self.batch.events.append(evidence.rollback_started_event(run, action))
        return False

    def _continue_or_finish(self, state: RunState, now: datetime, **fields: Any) -> bool:
        """End the run when nothing is left, else save its progress."""
        move = state.next_move(now)
        if isinstance(move, Finish):
            return self._end(state, move, now, progress=fields)
        self._save_run(state, now, **fields)
        return False

    def _end(
        self,
        state: RunState,
        finish: Finish,
        now: datetime,
        *,
        progress: dict[str, Any] | None = None,
        **fields: Any,
    ) -> bool:
        """Finish the run in this transaction when its scope's state can be read here (its
        platforms live in the database); else save its progress and leave ``finishing``
        set, for the runner to read the state and call ``record_finish``. Return True when
        the run finished (and was handed back). ``progress`` is saved only in the latter
        case; ``fields`` in both."""
        if not state.reads_state_in_database:
            self._save_run(state, now, **(progress or {}), **fields)
            state.finishing = finish
            return False
        self._ending.append((state, finish, now, fields))
        return True

    def _finish_ending(self) -> None:
        """Finish the runs that ended in this group, reading their scopes' state (in the
        database) with one query per org and platform."""
        by_org: dict[str, list[tuple[RunState, Finish, datetime, dict[str, Any]]]] = {}
        for ending in self._ending:
            by_org.setdefault(ending[0].run.org_id, []).append(ending)
        for org_id, endings in by_org.items():
            found = snapshot_scopes(org_id=org_id, scopes=[e[0].run.scope for e in endings])
            for (state, finish, now, fields), snapshot in zip(endings, found, strict=True):
                self._finish(state, finish, now, snapshot, **fields)

    def _finish(
        self, state: RunState, finish: Finish, now: datetime, after: Snapshot, **fields: Any
    ) -> None:
        """End the run with the state of its scope after it: the snapshot and its hash,
        in the run's one update."""
        run = state.run
        state.finishing = None
        after_hash = state_hash(after)
        self._save_run(
            state,
            now,
            status=finish.status,
            current_step_id=finish.current_step_id,
            after_state=after,
            after_state_hash=after_hash,
            finished_at=now,
            leased_by="",
            lease_expires_at=None,
            holds_scope=False,
            rollback_lock_holder="",
            rollback_lock_expires_at=None,
            **fields,
        )
        self.batch.released_scopes.append(run.run_id)
        self.batch.events.append(
            evidence.finished_event(
                run, finish.status, after_state_hash=after_hash, records=state.records
            )
        )
        _log_committed(
            run, "run=%s trace=%s finished status=%s", run.run_id, run.trace_id, finish.status
        )

    # ---- rows ----------------------------------------------------------------------------

    def _save_run(self, state: RunState, now: datetime, **fields: Any) -> None:
        """Update the run (``recording`` checked that this runner holds it)."""
        run = state.run
        fields.setdefault("lease_expires_at", now + lease_seconds())
        fields["updated_at"] = now
        if run.status == RunStatus.COMPENSATING or fields.get("status") == RunStatus.COMPENSATING:
            fields.setdefault("rollback_lock_expires_at", now + rollback_lock_seconds())
        for name, value in fields.items():
            setattr(run, name, value)
        self.batch.update_run(run, fields)

    def _save_execution(
        self, state: RunState, action: Action, key: str, started_at: datetime, **fields: Any
    ) -> None:
        execution = state.records.get((action.step_id, action.kind))
        if execution is None:
            execution = StepExecution(
                run=state.run,
                org_id=state.run.org_id,
                step_id=action.step_id,
                name=action.name,
                kind=action.kind,
                position=action.position,
                idempotency_key=key,
                compensates_id=action.compensates_mutation_id,
                started_at=started_at,
                **fields,
            )
            state.records[(action.step_id, action.kind)] = execution
            self.batch.new_executions.append(execution)
            return
        for name, value in fields.items():
            setattr(execution, name, value)
        self.batch.update_execution(execution, list(fields))

    def _save_error(
        self,
        state: RunState,
        action: Action,
        attempt: Attempt,
        error: PlatformError,
        now: datetime,
        **fields: Any,
    ) -> None:
        """Save a failed attempt of the step: its count, its error, its error history
        (with when the attempt started, so that the timeline draws it from start to end)."""
        errors = evidence.errors_with(state, action, attempt, error, now)
        errors[-1]["started_at"] = attempt.started_at.isoformat()
        self._save_execution(
            state,
            action,
            attempt.key,
            attempt.started_at,
            attempts=attempt.number,
            last_error=error.message,
            errors=errors,
            **fields,
        )

    def _append_mutation(
        self,
        run: WorkflowRun,
        action: Action,
        attempt: Attempt,
        *,
        result: dict[str, Any] | None = None,
        error_message: str | None = None,
        receipt: dict[str, Any],
    ) -> Mutation:
        mutation = evidence.mutation_for(
            run, action, attempt, result=result, error_message=error_message, receipt=receipt
        )
        self.batch.mutations.append(mutation)  # chained and inserted last, see Batch.flush
        return mutation


def _log_committed(run: WorkflowRun, message: str, *args: object) -> None:
    """Log once the outcome is committed (a group that fails writes nothing, says nothing),
    with the run's ids as the record's fields (JSON logs show them)."""
    fields = {"run_id": run.run_id, "trace_id": run.trace_id, "decision_id": run.decision_id}
    transaction.on_commit(partial(logger.info, message, *args, extra=fields))


def _log_outcome(
    run: WorkflowRun, action: Action, attempt: Attempt, outcome: str, detail: str
) -> None:
    _log_committed(
        run,
        "run=%s trace=%s step=%s kind=%s attempt=%d outcome=%s %s",
        run.run_id,
        run.trace_id,
        action.name,
        action.kind,
        attempt.number,
        outcome,
        detail,
    )
