"""Executing a claimed run step by step, and undoing it when a step fails for good.

Each platform call happens outside any transaction with the step's stable idempotency
key; its outcome (mutation row, step state, run state, event) is then recorded in one
transaction that only succeeds while this runner still holds the run's lease.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from mutations.connectors import Change, PlatformError, TransientError, get_connector
from mutations.hashing import canonical_json, snapshot_scope, state_hash
from mutations.models import Mutation, RuntimeEvent
from mutations.services import DECISION_RUNTIME, record_event
from runs.exceptions import LeaseLost
from runs.models import RunStatus, ScopeLock, StepExecution, WorkflowRun
from runs.retry import RetryPolicy
from runs.workflows import Workflow, get_workflow

logger = logging.getLogger("runs.engine")

LEASE_SECONDS = 30
MISSING_WORKFLOW_RECHECK_SECONDS = 60
SCOPE_WAIT_SECONDS = 0.5
WORKFLOW_COMPLETE = "workflow_complete"
COMPENSATION_COMPLETE = "compensation_complete"
COMPENSATION_INCOMPLETE = "compensation_incomplete"
COMPENSATION_REASON = "downstream_step_failure"

Kind = StepExecution.Kind


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
    compensates: Mutation | None = None
    skip_reason: str = ""  # a compensation that cannot run: why the step has none


def scope_keys(scope: dict[str, dict[str, Any]]) -> list[str]:
    """Return one lock key per platform object of a run's scope."""
    return sorted(f"{platform}:{canonical_json(target)}" for platform, target in scope.items())


class Engine:
    def __init__(self, *, worker_id: str) -> None:
        self.worker_id = worker_id

    def drive(self, run_id: str) -> datetime | None:
        """Advance a claimed run until it ends or must wait; return when it is due again."""
        while True:
            run = WorkflowRun.objects.get(pk=run_id)
            if run.leased_by != self.worker_id or run.is_terminal:
                return None
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
                return timezone.now() + timedelta(seconds=MISSING_WORKFLOW_RECHECK_SECONDS)
            wake_at = self._tick(run, workflow)
            if wake_at is not None:
                return wake_at

    # ---- one unit of progress ------------------------------------------------------------

    def _tick(self, run: WorkflowRun, workflow: Workflow) -> datetime | None:
        if run.status == RunStatus.PENDING:
            return self._start(run, workflow)
        executions = {(e.step_id, e.kind): e for e in run.steps.select_related("mutation").all()}
        if run.status == RunStatus.RUNNING:
            # A first step that failed for good leaves nothing to undo: the run just ends.
            action = None if run.failed_step_id else self._next_forward(run, workflow, executions)
        else:
            action = self._next_compensation(run, workflow, executions)
        if action is None:
            self._finish(run, workflow, executions)
            return None
        if action.skip_reason:
            self._skip_compensation(run, action)
            return None
        return self._attempt(run, action, executions.get((action.step_id, action.kind)))

    def _next_forward(
        self, run: WorkflowRun, workflow: Workflow, executions: dict[tuple[str, str], Any]
    ) -> Action | None:
        for position, step in enumerate(workflow.steps):
            execution = executions.get((step.id, Kind.FORWARD))
            if execution is not None and execution.status == StepExecution.Status.SUCCEEDED:
                continue
            return Action(
                step_id=step.id,
                name=step.id,
                kind=Kind.FORWARD,
                position=position,
                change=step.build(run.input),
                retry=step.retry,
                timeout=step.timeout,
            )
        return None

    def _next_compensation(
        self, run: WorkflowRun, workflow: Workflow, executions: dict[tuple[str, str], Any]
    ) -> Action | None:
        """Return the compensation of the latest applied step not yet undone (LIFO)."""
        applied = sorted(
            (
                e
                for e in executions.values()
                if e.kind == Kind.FORWARD and e.status == StepExecution.Status.SUCCEEDED
            ),
            key=lambda e: e.position,
            reverse=True,
        )
        for forward in applied:
            done = executions.get((forward.step_id, Kind.COMPENSATION))
            if done is not None and done.status != StepExecution.Status.PENDING:
                continue
            step = workflow.step(forward.step_id)
            original: Mutation = forward.mutation
            applied_change = Change(
                platform=original.platform,
                mutation_type=original.mutation_type,
                payload=original.payload,
                target=original.target,
            )
            if step.compensation is None:
                return Action(
                    step_id=step.id,
                    name=step.id,
                    kind=Kind.COMPENSATION,
                    position=forward.position,
                    change=applied_change,
                    retry=step.retry,
                    timeout=step.timeout,
                    compensates=original,
                    skip_reason=step.no_rollback_reason,
                )
            return Action(
                step_id=step.id,
                name=step.compensation.id,
                kind=Kind.COMPENSATION,
                position=forward.position,
                change=step.compensation.build(applied_change),
                retry=step.compensation.retry,
                timeout=step.compensation.timeout,
                compensates=original,
            )
        return None

    # ---- platform calls ------------------------------------------------------------------

    def _attempt(
        self, run: WorkflowRun, action: Action, execution: StepExecution | None
    ) -> datetime | None:
        started_at = timezone.now()
        due = execution.next_attempt_at if execution is not None else None
        if due is not None and due > started_at:
            return due
        attempt = (execution.attempts if execution else 0) + 1
        key = self._key(run, action)
        try:
            result = get_connector(action.change.platform).apply(
                org_id=run.org_id,
                idempotency_key=key,
                change=action.change,
                timeout=action.timeout,
            )
        except PlatformError as error:
            return self._record_failure(run, action, execution, key, attempt, started_at, error)
        except Exception as exc:  # an unclassified failure is treated as transient
            logger.exception("run=%s step=%s unexpected connector error", run.run_id, action.name)
            unclassified = TransientError(f"{type(exc).__name__}: {exc}")
            return self._record_failure(
                run, action, execution, key, attempt, started_at, unclassified
            )
        self._record_success(run, action, execution, key, attempt, started_at, result)
        return None

    @staticmethod
    def _key(run: WorkflowRun, action: Action) -> str:
        suffix = ":compensate" if action.kind == Kind.COMPENSATION else ""
        return f"{run.idempotency_key}:{action.step_id}{suffix}"

    def _record_success(
        self,
        run: WorkflowRun,
        action: Action,
        execution: StepExecution | None,
        key: str,
        attempt: int,
        started_at: datetime,
        result: dict[str, Any],
    ) -> None:
        with transaction.atomic():
            now = timezone.now()
            mutation = self._append_mutation(
                run, action, key, started_at, result=result, error_message=None
            )
            self._save_execution(
                run,
                action,
                execution,
                key,
                started_at,
                status=StepExecution.Status.SUCCEEDED,
                attempts=attempt,
                mutation=mutation,
                next_attempt_at=None,
                finished_at=now,
            )
            self._save_run(run, now, current_step_id=action.name)
            compensation = action.kind == Kind.COMPENSATION
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
                        {"compensates_mutation_id": action.compensates.mutation_id}
                        if action.compensates
                        else {}
                    ),
                },
            )
        logger.info(
            "run=%s trace=%s step=%s kind=%s attempt=%d outcome=applied mutation=%s",
            run.run_id,
            run.trace_id,
            action.name,
            action.kind,
            attempt,
            mutation.mutation_id,
        )

    def _record_failure(
        self,
        run: WorkflowRun,
        action: Action,
        execution: StepExecution | None,
        key: str,
        attempt: int,
        started_at: datetime,
        error: PlatformError,
    ) -> datetime | None:
        now = timezone.now()
        history = [
            *(execution.errors if execution else []),
            {
                "attempt": attempt,
                "kind": error.kind,
                "message": error.message,
                "at": now.isoformat(),
            },
        ]
        retry = error.retryable and attempt < action.retry.max_attempts
        with transaction.atomic():
            if retry:
                wake_at = now + timedelta(
                    seconds=action.retry.delay(attempt, retry_after=error.retry_after)
                )
                self._save_execution(
                    run,
                    action,
                    execution,
                    key,
                    started_at,
                    attempts=attempt,
                    last_error=error.message,
                    errors=history,
                    next_attempt_at=wake_at,
                )
                self._save_run(run, now, current_step_id=action.name, next_wake_at=wake_at)
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
            else:
                wake_at = None
                mutation = self._append_mutation(
                    run, action, key, started_at, result=None, error_message=error.message
                )
                self._save_execution(
                    run,
                    action,
                    execution,
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
                if action.kind == Kind.FORWARD:
                    self._fail_forward(run, action, error, now)
                else:
                    self._save_run(run, now)
                    self._event(
                        run,
                        RuntimeEvent.Kind.COMPENSATION_FAILED,
                        delta_summary=f"{action.name} could not undo "
                        f"{action.compensates.mutation_id if action.compensates else '?'}",
                        payload={
                            "step_id": action.name,
                            "attempts": attempt,
                            "error": error.message,
                        },
                    )
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
        return wake_at

    def _fail_forward(
        self, run: WorkflowRun, action: Action, error: PlatformError, now: datetime
    ) -> None:
        self._event(
            run,
            RuntimeEvent.Kind.STEP_FAILED,
            delta_summary=f"{action.name} failed for good ({error.kind})",
            payload={"step_id": action.name, "error": error.message, "error_kind": error.kind},
        )
        applied = run.steps.filter(
            kind=Kind.FORWARD, status=StepExecution.Status.SUCCEEDED
        ).exists()
        if applied:
            self._save_run(
                run,
                now,
                status=RunStatus.COMPENSATING,
                failed_step_id=action.name,
                current_step_id=action.name,
            )
            self._event(
                run,
                RuntimeEvent.Kind.ROLLBACK_STARTED,
                delta_summary=f"Undoing earlier steps in reverse order after {action.name} failed",
                payload={"failed_step_id": action.name, "rollback_mode": "lifo_stack"},
            )
        else:
            self._save_run(run, now, failed_step_id=action.name)

    def _skip_compensation(self, run: WorkflowRun, action: Action) -> None:
        with transaction.atomic():
            now = timezone.now()
            StepExecution.objects.create(
                run=run,
                org_id=run.org_id,
                step_id=action.step_id,
                name=action.name,
                kind=Kind.COMPENSATION,
                position=action.position,
                idempotency_key=self._key(run, action),
                status=StepExecution.Status.SKIPPED,
                skip_reason=action.skip_reason,
                compensates=action.compensates,
                started_at=now,
                finished_at=now,
            )
            self._save_run(run, now)
            self._event(
                run,
                RuntimeEvent.Kind.COMPENSATION_SKIPPED,
                delta_summary=f"{action.step_id} has no compensation: {action.skip_reason}",
                payload={"step_id": action.step_id, "reason": action.skip_reason},
            )
        logger.info(
            "run=%s trace=%s step=%s kind=compensation outcome=skipped reason=%r",
            run.run_id,
            run.trace_id,
            action.step_id,
            action.skip_reason,
        )

    # ---- run state -----------------------------------------------------------------------

    def _start(self, run: WorkflowRun, workflow: Workflow) -> datetime | None:
        """Take the run's scope and its before-hash; wait while another run holds the scope."""
        keys = scope_keys(run.scope)
        try:
            with transaction.atomic():
                now = timezone.now()
                held = set(ScopeLock.objects.filter(run=run).values_list("key", flat=True))
                ScopeLock.objects.bulk_create(
                    ScopeLock(org_id=run.org_id, key=key, run=run, acquired_at=now)
                    for key in keys
                    if key not in held
                )
                before = state_hash(snapshot_scope(org_id=run.org_id, scope=run.scope))
                self._save_run(
                    run,
                    now,
                    status=RunStatus.RUNNING,
                    before_state_hash=before,
                    current_step_id=workflow.steps[0].id,
                )
                self._event(
                    run,
                    RuntimeEvent.Kind.RUN_STARTED,
                    before_state_hash=before,
                    delta_summary=f"{workflow.id} v{workflow.version} started",
                    payload={
                        "workflow_run_id": run.run_id,
                        "workflow_id": workflow.id,
                        "workflow_version": workflow.version,
                        "idempotency_key": run.idempotency_key,
                    },
                )
        except IntegrityError:
            holders = ScopeLock.objects.filter(org_id=run.org_id, key__in=keys).values_list(
                "run_id", flat=True
            )
            logger.debug(
                "run=%s trace=%s waiting for the scope held by %s",
                run.run_id,
                run.trace_id,
                ", ".join(sorted(set(holders))),
            )
            return timezone.now() + timedelta(seconds=SCOPE_WAIT_SECONDS)
        logger.info("run=%s trace=%s started %s", run.run_id, run.trace_id, workflow.id)
        return None

    def _finish(
        self, run: WorkflowRun, workflow: Workflow, executions: dict[tuple[str, str], Any]
    ) -> None:
        compensations = [e for e in executions.values() if e.kind == Kind.COMPENSATION]
        undone = [e.compensates_id for e in compensations if e.status == "succeeded"]
        if run.status == RunStatus.RUNNING and not run.failed_step_id:
            status, current = RunStatus.COMPLETED, WORKFLOW_COMPLETE
        elif run.status == RunStatus.RUNNING:
            status, current = RunStatus.FAILED, run.failed_step_id or ""
        elif all(e.status == StepExecution.Status.SUCCEEDED for e in compensations):
            status, current = RunStatus.COMPENSATED, COMPENSATION_COMPLETE
        else:
            status, current = RunStatus.COMPENSATION_FAILED, COMPENSATION_INCOMPLETE
        after = state_hash(snapshot_scope(org_id=run.org_id, scope=run.scope))
        with transaction.atomic():
            now = timezone.now()
            self._save_run(
                run,
                now,
                status=status,
                current_step_id=current,
                after_state_hash=after,
                finished_at=now,
                leased_by="",
                lease_expires_at=None,
            )
            ScopeLock.objects.filter(run=run).delete()
            self._event(
                run,
                RuntimeEvent.Kind.RUN_FINISHED,
                before_state_hash=run.before_state_hash,
                after_state_hash=after,
                delta_summary=self._summary(run, status, executions, compensations),
                payload={
                    "workflow_run_id": run.run_id,
                    "terminal_status": status,
                    "failed_step_id": run.failed_step_id,
                    "compensated_mutations": undone,
                },
            )
        logger.info("run=%s trace=%s finished status=%s", run.run_id, run.trace_id, status)

    def _summary(
        self,
        run: WorkflowRun,
        status: str,
        executions: dict[tuple[str, str], Any],
        compensations: list[StepExecution],
    ) -> str:
        if status == RunStatus.COMPLETED:
            return f"Workflow completed: {len(executions)} step(s) applied"
        failed = executions.get((run.failed_step_id or "", Kind.FORWARD))
        cause = ""
        if failed is not None and failed.mutation is not None:
            api = get_connector(failed.mutation.platform).api_name
            kind = failed.errors[-1]["kind"] if failed.errors else "error"
            cause = f" ({api} {kind})"
        if status == RunStatus.COMPENSATED:
            return f"Workflow compensated after downstream step failure{cause}"
        if status == RunStatus.FAILED:
            return f"Workflow failed at {run.failed_step_id}{cause}; nothing to undo"
        left = [e.name for e in compensations if e.status != StepExecution.Status.SUCCEEDED]
        return (
            f"Compensation incomplete after step failure{cause}: "
            f"{', '.join(left)} left for a person"
        )

    # ---- writes (call inside a transaction) ----------------------------------------------

    def _save_run(self, run: WorkflowRun, now: datetime, **fields: Any) -> None:
        """Update the run only while this runner holds its lease (fencing)."""
        fields.setdefault("lease_expires_at", now + timedelta(seconds=LEASE_SECONDS))
        fields["updated_at"] = now
        if not WorkflowRun.objects.filter(pk=run.pk, leased_by=self.worker_id).update(**fields):
            raise LeaseLost(f"Runner {self.worker_id} lost the lease of {run.run_id}.")
        for name, value in fields.items():
            setattr(run, name, value)

    def _save_execution(
        self,
        run: WorkflowRun,
        action: Action,
        execution: StepExecution | None,
        key: str,
        started_at: datetime,
        **fields: Any,
    ) -> None:
        if execution is None:
            StepExecution.objects.create(
                run=run,
                org_id=run.org_id,
                step_id=action.step_id,
                name=action.name,
                kind=action.kind,
                position=action.position,
                idempotency_key=key,
                compensates=action.compensates,
                started_at=started_at,
                **fields,
            )
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
        *,
        result: dict[str, Any] | None,
        error_message: str | None,
    ) -> Mutation:
        payload = dict(action.change.payload)
        if action.compensates is not None:
            payload["compensates_mutation_id"] = action.compensates.mutation_id
            payload["compensation_reason"] = COMPENSATION_REASON
            status = (
                Mutation.Status.ROLLED_BACK if error_message is None else Mutation.Status.FAILED
            )
            actor = Mutation.COMPENSATION_ACTOR
        else:
            status = Mutation.Status.SUCCESS if error_message is None else Mutation.Status.FAILED
            actor = run.requested_by
        return Mutation.objects.create(
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
            compensates=action.compensates,
            created_at=started_at,
            error_message=error_message,
        )

    def _event(self, run: WorkflowRun, kind: str, **fields: Any) -> None:
        record_event(
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
