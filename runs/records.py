"""The engine's writes: each outcome of a step, recorded in one fenced transaction.

This is the one place that writes what a platform call did: the Mutation Log row, the
step execution, the run's state, its events, and the run's end when nothing is left to
do. Each outcome is one transaction that only commits while this runner holds the run's
lease (and, while compensating, its rollback lock), so a runner that lost the run
commits nothing. Each write also updates the runner's copy of the run (``RunState``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from mutations import chain
from mutations.connectors import Applied, PlatformError
from mutations.hashing import snapshot_scope, state_hash
from mutations.models import Mutation, RuntimeEvent
from runs import evidence, saga
from runs.exceptions import LeaseLost
from runs.models import RunStatus, ScopeLock, StepExecution, WorkflowRun
from runs.saga import Action, Finish
from runs.state import Attempt, RunState

# The engine's outcomes, logged under the engine's name where they are written.
logger = logging.getLogger("runs.engine")


def lease_seconds() -> timedelta:
    return timedelta(seconds=settings.BACKSTOP_LEASE_SECONDS)


def rollback_lock_seconds() -> timedelta:
    return timedelta(seconds=settings.BACKSTOP_ROLLBACK_LOCK_SECONDS)


class Recorder:
    """Write the outcomes of one runner's platform calls, each in one transaction fenced by
    the runner's lease. The ``record_*`` methods of a step's outcome return True when the
    run was handed back (it finished, or waits for a retry), False when this runner goes
    on driving it."""

    def __init__(self, *, worker_id: str) -> None:
        self.worker_id = worker_id
        self._outbox: list[RuntimeEvent] = []
        self._unlinked: list[Mutation] = []

    # ---- outcomes ------------------------------------------------------------------------

    def record_applied(
        self, state: RunState, action: Action, attempt: Attempt, applied: Applied
    ) -> bool:
        """Record a change the platform applied: its mutation, the step succeeded, its
        event, and the run's progress (or its end)."""
        run = state.run
        with self._recording():
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
            self._outbox.append(
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
        with self._recording():
            self._save_execution(
                state,
                action,
                attempt.key,
                attempt.started_at,
                attempts=attempt.number,
                last_error=error.message,
                errors=_errors_with(state, action, attempt, error, now),
                next_attempt_at=wake_at,
            )
            self._outbox.append(
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
        with self._recording():
            mutation = self._append_mutation(
                run, action, attempt, error_message=error.message, receipt=error.receipt
            )
            self._save_execution(
                state,
                action,
                attempt.key,
                attempt.started_at,
                status=StepExecution.Status.FAILED,
                attempts=attempt.number,
                last_error=error.message,
                errors=_errors_with(state, action, attempt, error, now),
                mutation=mutation,
                next_attempt_at=None,
                finished_at=now,
            )
            if action.kind == saga.FORWARD:
                done = self._fail_forward(state, action, error, now)
            else:
                self._outbox.append(
                    evidence.compensation_failed_event(run, action, error, attempts=attempt.number)
                )
                done = self._continue_or_finish(state, now, current_step_id=action.name)
        _log_outcome(run, action, attempt, "failed", f"error={error.message!r}")
        return done

    def record_skip(self, state: RunState, action: Action) -> bool:
        """Record a compensation that cannot run (its step declares none) and why."""
        run = state.run
        with self._recording():
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
            self._outbox.append(evidence.skipped_event(run, action))
            done = self._continue_or_finish(state, now, current_step_id=action.step_id)
        logger.info(
            "run=%s trace=%s step=%s kind=compensation outcome=skipped reason=%r",
            run.run_id,
            run.trace_id,
            action.step_id,
            action.skip_reason,
        )
        return done

    def record_finish(self, state: RunState, finish: Finish) -> None:
        """Record the end of a run whose last outcome was recorded without it."""
        with self._recording():
            self._finish(state, finish, timezone.now())

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
        self._outbox.append(evidence.step_failed_event(run, action, error))
        applied = any(
            r.kind == saga.FORWARD and r.status == StepExecution.Status.SUCCEEDED
            for r in state.records.values()
        )
        if not applied:
            run.failed_step_id = action.name
            self._finish(
                state, Finish(RunStatus.FAILED, action.name), now, failed_step_id=action.name
            )
            return True
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
        self._outbox.append(evidence.rollback_started_event(run, action))
        return False

    def _continue_or_finish(self, state: RunState, now: datetime, **fields: Any) -> bool:
        """Finish the run in this transaction when nothing is left, else save its progress."""
        move = state.next_move(now)
        if isinstance(move, Finish):
            self._finish(state, move, now)
            return True
        self._save_run(state, now, **fields)
        return False

    def _finish(self, state: RunState, finish: Finish, now: datetime, **fields: Any) -> None:
        run = state.run
        after = state_hash(snapshot_scope(org_id=run.org_id, scope=run.scope))
        self._save_run(
            state,
            now,
            status=finish.status,
            current_step_id=finish.current_step_id,
            after_state_hash=after,
            finished_at=now,
            leased_by="",
            lease_expires_at=None,
            holds_scope=False,
            rollback_lock_holder="",
            rollback_lock_expires_at=None,
            **fields,
        )
        ScopeLock.objects.filter(run=run).delete()
        self._outbox.append(
            evidence.finished_event(
                run, finish.status, after_state_hash=after, records=state.records
            )
        )
        logger.info("run=%s trace=%s finished status=%s", run.run_id, run.trace_id, finish.status)

    # ---- rows ----------------------------------------------------------------------------

    def _save_run(self, state: RunState, now: datetime, **fields: Any) -> None:
        """Update the run only while this runner holds its lease (and, while compensating,
        its rollback lock)."""
        run = state.run
        fields.setdefault("lease_expires_at", now + lease_seconds())
        fields["updated_at"] = now
        guard = Q(pk=run.pk, leased_by=self.worker_id)
        if run.status == RunStatus.COMPENSATING:
            guard &= Q(rollback_lock_holder=self.worker_id)
            fields.setdefault("rollback_lock_expires_at", now + rollback_lock_seconds())
        if not WorkflowRun.objects.filter(guard).update(**fields):
            raise LeaseLost(f"Runner {self.worker_id} lost the lease of {run.run_id}.")
        for name, value in fields.items():
            setattr(run, name, value)

    def _save_execution(
        self, state: RunState, action: Action, key: str, started_at: datetime, **fields: Any
    ) -> None:
        execution = state.records.get((action.step_id, action.kind))
        if execution is None:
            execution = StepExecution.objects.create(
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
            return
        for name, value in fields.items():
            setattr(execution, name, value)
        execution.save(update_fields=list(fields))

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
        self._unlinked.append(mutation)  # chained and inserted last, see _recording
        return mutation

    @contextmanager
    def _recording(self) -> Iterator[None]:
        """One transaction for an outcome. Its mutation joins the org's hash chain as the
        last write, so the chain's lock is held only for the insert and the commit; the
        foreign keys that point at it are checked at commit."""
        try:
            with transaction.atomic():
                yield
                if self._unlinked:
                    chain.link(*self._unlinked)
                    Mutation.objects.bulk_create(self._unlinked)
                RuntimeEvent.objects.bulk_create(self._outbox)
        finally:
            self._outbox.clear()
            self._unlinked.clear()


def _errors_with(
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


def _log_outcome(
    run: WorkflowRun, action: Action, attempt: Attempt, outcome: str, detail: str
) -> None:
    logger.info(
        "run=%s trace=%s step=%s kind=%s attempt=%d outcome=%s %s",
        run.run_id,
        run.trace_id,
        action.name,
        action.kind,
        attempt.number,
        outcome,
        detail,
    )
