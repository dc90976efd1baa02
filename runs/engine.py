"""The built-in durable engine: drive claimed runs step by step, and undo them when a step
fails for good.

A platform call happens outside any transaction, with the step's stable idempotency key.
Its outcome (mutation row, step state, run state, event, and the run's end when that was
the last thing to do) is then recorded in one transaction that only commits while this
runner still holds the run's lease (fencing). A run's state is kept in memory between
steps: nobody else may write it while we hold the lease.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from mutations import chain
from mutations.connectors import Applied, Call, PlatformError, TransientError, get_connector
from mutations.hashing import snapshot_scope, state_hash
from mutations.models import Mutation, RuntimeEvent
from mutations.services import DECISION_RUNTIME, new_event
from runs import saga
from runs.crashpoints import crash_point
from runs.exceptions import LeaseLost
from runs.models import RunStatus, ScopeLock, StepExecution, WorkflowRun
from runs.saga import Action, Finish
from runs.workflows import Workflow

logger = logging.getLogger("runs.engine")

DOWNSTREAM_FAILURE = "downstream_step_failure"


def lease_seconds() -> timedelta:
    return timedelta(seconds=settings.BACKSTOP_LEASE_SECONDS)


def rollback_lock_seconds() -> timedelta:
    return timedelta(seconds=settings.BACKSTOP_ROLLBACK_LOCK_SECONDS)


@dataclass
class RunState:
    """A claimed run with its step records, as this runner knows them."""

    run: WorkflowRun
    workflow: Workflow
    records: dict[tuple[str, str], StepExecution] = field(default_factory=dict)

    def next_move(self) -> Action | Finish:
        return saga.next_move(
            self.workflow,
            self.run.input,
            compensating=self.run.status == RunStatus.COMPENSATING,
            failed_step_id=self.run.failed_step_id,
            records=self.records,
        )


class Engine:
    def __init__(self, *, worker_id: str) -> None:
        self.worker_id = worker_id
        self._outbox: list[RuntimeEvent] = []
        self._unlinked: list[Mutation] = []

    def drive(self, state: RunState, *, stopping: Callable[[], bool] = lambda: False) -> bool:
        """Advance a claimed run until it ends, must wait, or the runner stops.

        Return True when the run was handed back (finished or waiting), False when it is
        still leased to this runner and must be released.
        """
        while not stopping():
            move = state.next_move()
            if isinstance(move, Finish):  # only after a crash between the last record and here
                with self._recording():
                    self._finish(state, move, timezone.now())
                return True
            if move.skip_reason:
                if self._skip_compensation(state, move):
                    return True
                continue
            if self._attempt(state, move):
                return True
        return False

    # ---- platform calls ------------------------------------------------------------------

    def _attempt(self, state: RunState, action: Action) -> bool:
        """Make one attempt of an action; return True when the run was handed back."""
        run = state.run
        execution = state.records.get((action.step_id, action.kind))
        started_at = timezone.now()
        due = execution.next_attempt_at if execution is not None else None
        if due is not None and due > started_at:
            self._release(state, due)
            return True
        attempt = (execution.attempts if execution else 0) + 1
        key = run.idempotency_key + action.idempotency_suffix
        crash_point("before_platform_call")
        call = Call(
            decision_id=run.decision_id, run_id=run.run_id, step_id=action.name, kind=action.kind
        )
        try:
            applied = get_connector(action.change.platform).apply(
                org_id=run.org_id,
                idempotency_key=key,
                change=action.change,
                timeout=action.timeout,
                call=call,
            )
        except PlatformError as error:
            crash_point("after_platform_call")
            return self._record_failure(state, action, key, attempt, started_at, error)
        except Exception as exc:  # an unclassified failure is treated as transient
            logger.exception("run=%s step=%s unexpected connector error", run.run_id, action.name)
            unclassified = TransientError(f"{type(exc).__name__}: {exc}")
            return self._record_failure(state, action, key, attempt, started_at, unclassified)
        crash_point("after_platform_call")
        return self._record_success(state, action, key, attempt, started_at, applied)

    def _record_success(
        self,
        state: RunState,
        action: Action,
        key: str,
        attempt: int,
        started_at: datetime,
        applied: Applied,
    ) -> bool:
        run = state.run
        with self._recording():
            now = timezone.now()
            mutation = self._append_mutation(
                run, action, key, started_at, applied.result, None, applied.receipt
            )
            self._save_execution(
                state,
                action,
                key,
                started_at,
                status=StepExecution.Status.SUCCEEDED,
                attempts=attempt,
                mutation=mutation,
                next_attempt_at=None,
                finished_at=now,
            )
            compensation = action.kind == saga.COMPENSATION
            self._event(
                run,
                RuntimeEvent.Kind.COMPENSATION_APPLIED
                if compensation
                else RuntimeEvent.Kind.STEP_SUCCEEDED,
                delta_summary=f"{action.name} applied on {action.change.platform}",
                payload={
                    "step_id": action.name,
                    "attempt": attempt,
                    "mutation_id": mutation.mutation_id,
                    "idempotency_key": key,
                    **(
                        {"compensates_mutation_id": action.compensates_mutation_id}
                        if compensation
                        else {}
                    ),
                },
            )
            done = self._continue_or_finish(state, now, current_step_id=action.name)
        logger.info(
            "run=%s trace=%s step=%s kind=%s attempt=%d outcome=applied mutation=%s",
            run.run_id,
            run.trace_id,
            action.name,
            action.kind,
            attempt,
            mutation.mutation_id,
        )
        self._after_record(action)
        return done

    def _record_failure(
        self,
        state: RunState,
        action: Action,
        key: str,
        attempt: int,
        started_at: datetime,
        error: PlatformError,
    ) -> bool:
        run = state.run
        execution = state.records.get((action.step_id, action.kind))
        now = timezone.now()
        history = [
            *(execution.errors if execution else []),
            {
                "attempt": attempt,
                "kind": error.kind,
                "message": error.message,
                "at": now.isoformat(),
                **error.receipt,
            },
        ]
        first_try = execution.started_at if execution and execution.started_at else started_at
        in_window = action.window is None or (now - first_try).total_seconds() < action.window
        retry = error.retryable and attempt < action.retry.max_attempts and in_window
        with self._recording():
            if retry:
                wake_at = now + timedelta(
                    seconds=action.retry.delay(attempt, retry_after=error.retry_after)
                )
                self._save_execution(
                    state,
                    action,
                    key,
                    started_at,
                    attempts=attempt,
                    last_error=error.message,
                    errors=history,
                    next_attempt_at=wake_at,
                )
                self._event(
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
                # Hand the run back until the retry is due, so any runner may take it then.
                self._save_run(
                    state,
                    now,
                    current_step_id=action.name,
                    next_wake_at=wake_at,
                    leased_by="",
                    lease_expires_at=None,
                )
                done = True
            else:
                mutation = self._append_mutation(
                    run, action, key, started_at, None, error.message, error.receipt
                )
                self._save_execution(
                    state,
                    action,
                    key,
                    started_at,
                    status=StepExecution.Status.FAILED,
                    attempts=attempt,
                    last_error=error.message,
                    errors=history,
                    mutation=mutation,
                    next_attempt_at=None,
                    finished_at=now,
                )
                if action.kind == saga.FORWARD:
                    done = self._fail_forward(state, action, error, now)
                else:
                    self._event(
                        run,
                        RuntimeEvent.Kind.COMPENSATION_FAILED,
                        delta_summary=f"{action.name} could not undo "
                        f"{action.compensates_mutation_id} ({error.kind})",
                        payload={
                            "step_id": action.name,
                            "attempts": attempt,
                            "error": error.message,
                            "compensates_mutation_id": action.compensates_mutation_id,
                        },
                    )
                    done = self._continue_or_finish(state, now, current_step_id=action.name)
        logger.info(
            "run=%s trace=%s step=%s kind=%s attempt=%d outcome=%s error=%r",
            run.run_id,
            run.trace_id,
            action.name,
            action.kind,
            attempt,
            "retry_scheduled" if retry else "failed",
            error.message,
        )
        self._after_record(action)
        return done

    def _after_record(self, action: Action) -> None:
        crash_point("after_record")
        if action.kind == saga.COMPENSATION:
            crash_point("between_compensations")

    def _fail_forward(
        self, state: RunState, action: Action, error: PlatformError, now: datetime
    ) -> bool:
        run = state.run
        self._event(
            run,
            RuntimeEvent.Kind.STEP_FAILED,
            delta_summary=f"{action.name} failed for good ({error.kind})",
            payload={"step_id": action.name, "error": error.message, "error_kind": error.kind},
        )
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
            rollback_reason=DOWNSTREAM_FAILURE,
            rollback_started_at=now,
            rollback_lock_holder=self.worker_id,
            rollback_lock_expires_at=now + rollback_lock_seconds(),
        )
        self._event(
            run,
            RuntimeEvent.Kind.ROLLBACK_STARTED,
            delta_summary=f"Undoing earlier steps in reverse order after {action.name} failed",
            payload={"failed_step_id": action.name, "rollback_mode": "lifo_stack"},
        )
        return False

    def _skip_compensation(self, state: RunState, action: Action) -> bool:
        run = state.run
        with self._recording():
            now = timezone.now()
            self._save_execution(
                state,
                action,
                run.idempotency_key + action.idempotency_suffix,
                now,
                status=StepExecution.Status.SKIPPED,
                skip_reason=action.skip_reason,
                finished_at=now,
            )
            self._event(
                run,
                RuntimeEvent.Kind.COMPENSATION_SKIPPED,
                delta_summary=f"{action.step_id} has no compensation: {action.skip_reason}",
                payload={
                    "step_id": action.step_id,
                    "reason": action.skip_reason,
                    "compensates_mutation_id": action.compensates_mutation_id,
                },
            )
            done = self._continue_or_finish(state, now, current_step_id=action.step_id)
        logger.info(
            "run=%s trace=%s step=%s kind=compensation outcome=skipped reason=%r",
            run.run_id,
            run.trace_id,
            action.step_id,
            action.skip_reason,
        )
        return done

    # ---- run state -----------------------------------------------------------------------

    def _continue_or_finish(self, state: RunState, now: datetime, **fields: Any) -> bool:
        """Finish the run in this transaction when nothing is left, else save its progress."""
        move = state.next_move()
        if isinstance(move, Finish):
            self._finish(state, move, now)
            return True
        self._save_run(state, now, **fields)
        return False

    def _finish(self, state: RunState, finish: Finish, now: datetime, **fields: Any) -> None:
        run = state.run
        compensations = [r for r in state.records.values() if r.kind == saga.COMPENSATION]
        undone = [r.compensates_id for r in compensations if r.status == "succeeded"]
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
        self._event(
            run,
            RuntimeEvent.Kind.RUN_FINISHED,
            before_state_hash=run.before_state_hash,
            after_state_hash=after,
            delta_summary=self._summary(state, finish.status, compensations),
            payload={
                "workflow_run_id": run.run_id,
                "terminal_status": finish.status,
                "failed_step_id": run.failed_step_id,
                "compensated_mutations": undone,
            },
        )
        logger.info("run=%s trace=%s finished status=%s", run.run_id, run.trace_id, finish.status)

    def _summary(self, state: RunState, status: str, compensations: list[StepExecution]) -> str:
        run = state.run
        if status == RunStatus.COMPLETED:
            return f"Workflow completed: {len(state.records)} step(s) applied"
        failed = state.records.get((run.failed_step_id or "", saga.FORWARD))
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
        return (
            f"Compensation incomplete after step failure{cause}: "
            f"{', '.join(left)} left for a person"
        )

    def _release(self, state: RunState, wake_at: datetime) -> None:
        self._save_run(
            state, timezone.now(), next_wake_at=wake_at, leased_by="", lease_expires_at=None
        )

    # ---- writes (inside a transaction) ---------------------------------------------------

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
        key: str,
        started_at: datetime,
        result: dict[str, Any] | None,
        error_message: str | None,
        receipt: dict[str, Any],
    ) -> Mutation:
        payload = dict(action.change.payload)
        if action.kind == saga.COMPENSATION:
            payload["compensates_mutation_id"] = action.compensates_mutation_id
            payload["compensation_reason"] = run.rollback_reason or DOWNSTREAM_FAILURE
            status = (
                Mutation.Status.ROLLED_BACK if error_message is None else Mutation.Status.FAILED
            )
            actor = Mutation.COMPENSATION_ACTOR
        else:
            status = Mutation.Status.SUCCESS if error_message is None else Mutation.Status.FAILED
            actor = run.requested_by
        mutation = Mutation(
            org_id=run.org_id,
            decision_id=run.decision_id,
            run=run,
            step_id=action.name,
            idempotency_key=key,
            platform=action.change.platform,
            mutation_type=action.change.mutation_type,
            target=action.change.target,
            payload=payload,
            result=result,
            status=status,
            actor_type=actor,
            compensates_id=action.compensates_mutation_id,
            created_at=started_at,
            error_message=error_message,
            receipt=receipt,
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

    def _event(self, run: WorkflowRun, kind: str, **fields: Any) -> None:
        self._outbox.append(
            new_event(
                org_id=run.org_id,
                workspace_id=run.workspace_id,
                decision_id=run.decision_id,
                run_id=run.run_id,
                trace_id=run.trace_id,
                surface=DECISION_RUNTIME,
                kind=kind,
                policy_ids=run.policy_ids,
                **fields,
            )
        )
