"""The built-in durable engine: drive claimed runs step by step, and undo them when a step
fails for good.

A platform call happens outside any transaction, with the step's stable idempotency key.
Its outcome is then recorded by ``runs.records`` in one transaction that only commits
while this runner still holds the run's lease (fencing). What to do next comes from
``runs.saga``; when to retry from the step's retry policy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from django.utils import timezone

from mutations.connectors import Call, PlatformError, TransientError, get_connector
from runs import saga
from runs.crashpoints import crash_point
from runs.records import Recorder
from runs.saga import Action, Finish, Wait
from runs.state import Attempt, RunState

logger = logging.getLogger("runs.engine")


class Engine:
    """Drive the runs one runner (``worker_id``) has claimed, one at a time."""

    def __init__(self, *, worker_id: str) -> None:
        self.worker_id = worker_id
        self.recorder = Recorder(worker_id=worker_id)

    def drive(self, state: RunState, *, stopping: Callable[[], bool] = lambda: False) -> bool:
        """Advance a claimed run until it ends, must wait, or the runner stops.

        Return True when the run was handed back (finished or waiting), False when it is
        still leased to this runner and must be released.
        """
        while not stopping():
            move = state.next_move(timezone.now())
            if isinstance(move, Finish):  # only after a crash between the last record and here
                self.recorder.record_finish(state, move)
                return True
            if isinstance(move, Wait):  # a retry that is not due yet: any runner may take it then
                self.recorder.release(state, move.until)
                return True
            if move.skip_reason:
                if self.recorder.record_skip(state, move):
                    return True
                continue
            if self._attempt(state, move):
                return True
        return False

    def _attempt(self, state: RunState, action: Action) -> bool:
        """Make one attempt of an action; return True when the run was handed back."""
        run = state.run
        execution = state.records.get((action.step_id, action.kind))
        attempt = Attempt(
            key=action.idempotency_key(run.idempotency_key),
            number=(execution.attempts if execution else 0) + 1,
            started_at=timezone.now(),
        )
        crash_point("before_platform_call")
        call = Call(
            decision_id=run.decision_id, run_id=run.run_id, step_id=action.name, kind=action.kind
        )
        try:
            applied = get_connector(action.change.platform).apply(
                org_id=run.org_id,
                idempotency_key=attempt.key,
                change=action.change,
                timeout=action.timeout,
                call=call,
            )
        except PlatformError as error:
            crash_point("after_platform_call")
            done = self._record_failure(state, action, attempt, error)
        except Exception as exc:  # an unclassified failure is treated as transient
            logger.exception("run=%s step=%s unexpected connector error", run.run_id, action.name)
            unclassified = TransientError(f"{type(exc).__name__}: {exc}")
            done = self._record_failure(state, action, attempt, unclassified)
        else:
            crash_point("after_platform_call")
            done = self.recorder.record_applied(state, action, attempt, applied)
        crash_point("after_record")
        if action.kind == saga.COMPENSATION:
            crash_point("between_compensations")
        return done

    def _record_failure(
        self, state: RunState, action: Action, attempt: Attempt, error: PlatformError
    ) -> bool:
        """Schedule another attempt when the error and the step's retry policy allow one,
        else record that the action failed for good."""
        now = timezone.now()
        wake_at = _retry_at(state, action, attempt, error, now)
        if wake_at is None:
            return self.recorder.record_failure(state, action, attempt, error, now=now)
        return self.recorder.record_retry(state, action, attempt, error, now=now, wake_at=wake_at)


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
