"""The built-in durable engine: one attempt of a step or compensation, and its record.

A platform call happens outside any transaction, with the step's stable idempotency key
(``attempt``, run by a runner's call pool). Its outcome is then recorded by
``runs.records`` inside a group transaction that only writes while this runner still
holds the run's lease (fencing). What to do next comes from ``runs.saga``; when to retry
from the step's retry policy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from mutations.connectors import Applied, Call, PlatformError, TransientError, get_connector
from runs import tracing
from runs.crashpoints import crash_point
from runs.models import WorkflowRun
from runs.records import Recorder
from runs.saga import Action
from runs.state import Attempt, RunState

logger = logging.getLogger("runs.engine")


@dataclass(frozen=True)
class Called:
    """What one attempt of an action got from its platform: a change applied, or an error."""

    action: Action
    attempt: Attempt
    applied: Applied | None = None
    error: PlatformError | None = None


def attempt(state: RunState, action: Action) -> Called:
    """Make one attempt of an action; write nothing of Backstop's own."""
    run = state.run
    execution = state.records.get((action.step_id, action.kind))
    this = Attempt(
        key=action.idempotency_key(run.idempotency_key),
        number=(execution.attempts if execution else 0) + 1,
        started_at=timezone.now(),
    )
    crash_point("before_platform_call")
    call = Call(
        decision_id=run.decision_id, run_id=run.run_id, step_id=action.name, kind=action.kind
    )
    with tracing.decision_span(
        "compensation.attempt" if action.kind == "compensation" else "step.attempt",
        run.trace_id,
        decision_id=run.decision_id,
        run_id=run.run_id,
        step_id=action.name,
        attempt=this.number,
        platform=action.change.platform,
    ) as span:
        try:
            applied = get_connector(action.change.platform).apply(
                org_id=run.org_id,
                idempotency_key=this.key,
                change=action.change,
                timeout=action.timeout,
                call=call,
            )
        except PlatformError as error:
            called = Called(action, this, error=error)
        except Exception as exc:  # an unclassified failure is treated as transient
            logger.exception(
                "run=%s step=%s unexpected connector error",
                run.run_id,
                action.name,
                extra=_log_fields(run),
            )
            called = Called(action, this, error=TransientError(f"{type(exc).__name__}: {exc}"))
        else:
            called = Called(action, this, applied=applied)
        if span is not None:
            tracing.attempt_outcome(span, called.error)
    crash_point("after_platform_call")
    return called


def _log_fields(run: WorkflowRun) -> dict[str, str]:
    return {"run_id": run.run_id, "trace_id": run.trace_id, "decision_id": run.decision_id}


def record(recorder: Recorder, state: RunState, called: Called) -> bool:
    """Record an attempt inside ``recorder.recording``: the change applied, another attempt
    scheduled when the error and the step's retry policy allow one, or the action failed
    for good. Return True when the run was handed back."""
    action, this = called.action, called.attempt
    if called.error is None:
        assert called.applied is not None
        return recorder.record_applied(state, action, this, called.applied)
    now = timezone.now()
    wake_at = _retry_at(state, action, this, called.error, now)
    if wake_at is None:
        return recorder.record_failure(state, action, this, called.error, now=now)
    return recorder.record_retry(state, action, this, called.error, now=now, wake_at=wake_at)


def _retry_at(
    state: RunState, action: Action, attempt: Attempt, error: PlatformError, now: datetime
) -> datetime | None:
    """Return when to try a failed action again, or None when it has failed for good: the
    error is not retryable, the attempts are used up, or (compensations) the time window
    since the first attempt has passed."""
    execution = state.records.get((action.step_id, action.kind))
    first_try = execution.started_at if execution and execution.started_at else attempt.started_at
    in_window = action.window is None or (now - first_try).total_seconds() < action.window
    if not (error.retryable and attempt.number < action.retry.max_attempts and in_window):
        return None
    delay = action.retry.delay(attempt.number, retry_after=error.retry_after)
    return now + timedelta(seconds=delay)
