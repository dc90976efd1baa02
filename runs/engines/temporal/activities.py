"""The activities of a Backstop run on Temporal: start it, make one call, end it.

Each writes what the built-in engine writes, through the same code: the platform call is
``runs.engine.attempt`` (the step's stable idempotency key), the outcome is recorded by
``runs.records.Recorder`` (Mutation Log row, step record, run state and events in one
transaction), what comes next is checked against ``runs.saga``. Every activity attempt
first takes the run's lease under a token of its own, and records only while it still
holds it: an attempt Temporal gave up on (its worker lost, its timeout passed) and that
wakes up later writes nothing.

Temporal retries an attempt whose platform answered with a retryable error after the
delay the step's policy gives (``next_retry_delay``: backoff, jitter, ``Retry-After``);
when the step's attempts or its compensation window are used up, the activity records the
failure and returns it, and the workflow moves on (to the rollback, or to the next
compensation).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.db import close_old_connections, transaction
from django.utils import timezone
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from ulid import ULID

from mutations.connectors import PlatformError
from mutations.hashing import snapshot_scopes
from runs import engine
from runs.claims import (
    MISSING_WORKFLOW_RECHECK,
    SCOPE_WAIT,
    SNAPSHOT_RETRY,
    Claim,
    load_records,
    take_scopes,
)
from runs.engines.temporal.workflow import ACT, BEGIN, FINISH, Act, Outcome, Progress
from runs.models import RUNNABLE_STATUSES, Engine, RunStatus, StepExecution, WorkflowRun
from runs.records import Recorder
from runs.saga import COMPENSATION, FORWARD, Action, Finish, Wait
from runs.state import RunState
from runs.workflows import get_workflow

OUTCOMES: dict[str, str] = {
    StepExecution.Status.SUCCEEDED: "applied",
    StepExecution.Status.FAILED: "failed",
    StepExecution.Status.SKIPPED: "skipped",
}


@activity.defn(name=BEGIN)
def begin(run_id: str) -> Progress:
    """Start the run: take its scope and record the state of it before any change. A run
    that already started (a retried rollback, a repeated start) is left as it is."""
    try:
        with _holding(run_id) as state:
            if state.run.status == RunStatus.PENDING:
                before = _read_scope(state)
                with _recording(state) as recorder:
                    recorder.record_start(state, before)
            return _progress(state)
    except _Over as over:
        return Progress(status=over.status, applied=[], undone=[])


@activity.defn(name=ACT)
def act(request: Act) -> Outcome:
    """Make one attempt of the step or compensation the workflow asks for, and record it.
    Asked again for one already recorded (its worker died before telling Temporal), it
    returns the recorded outcome: the platform is not called twice."""
    try:
        with _holding(request.run_id) as state:
            return _act(state, request)
    except _Over as over:
        return Outcome(outcome="stopped", status=over.status)


def _act(state: RunState, request: Act) -> Outcome:
    """Do what ``act`` says, for a run this attempt holds."""
    done = state.records.get((request.step_id, request.kind))
    if done is not None and done.status in OUTCOMES:
        return _outcome(state, OUTCOMES[done.status])
    move = state.next_move(timezone.now())
    if isinstance(move, Wait):
        raise _again(move.until, "the step's next attempt is not due yet")
    if not isinstance(move, Action) or (move.step_id, move.kind) != (
        request.step_id,
        request.kind,
    ):
        raise ApplicationError(
            f"Run {request.run_id}: asked for {request.kind} {request.step_id!r}, but its "
            f"next move is {_describe(move)}.",
            non_retryable=True,
        )
    if move.skip_reason:
        with _recording(state) as recorder:
            recorder.record_skip(state, move)
        return _outcome(state, "skipped")
    called = engine.attempt(state, move)
    with _recording(state) as recorder:
        engine.record(recorder, state, called)
    record = state.records[(move.step_id, move.kind)]
    if record.status == StepExecution.Status.PENDING:  # recorded as a retry
        assert record.next_attempt_at is not None and called.error is not None
        why = f"attempt {called.attempt.number}: {called.error.message}"
        raise _again(record.next_attempt_at, why)
    return _outcome(state, OUTCOMES[record.status])


@activity.defn(name=FINISH)
def finish(run_id: str) -> Outcome:
    """End a run whose last outcome is recorded: read its scope's state after it."""
    try:
        with _holding(run_id) as state:
            move = state.next_move(timezone.now())
            if not isinstance(move, Finish):
                raise ApplicationError(
                    f"Run {run_id} is not over: its next move is {_describe(move)}.",
                    non_retryable=True,
                )
            after = None if state.reads_state_in_database else _read_scope(state)
            with _recording(state) as recorder:
                recorder.record_finish(state, move, after)
            return _outcome(state, "finished")
    except _Over as over:
        return Outcome(outcome="finished", status=over.status)


# ---- holding a run -----------------------------------------------------------------------


class _Over(Exception):
    """The run is not runnable any more (it ended, or was cancelled)."""

    def __init__(self, status: str) -> None:
        self.status = status


@contextmanager
def _holding(run_id: str) -> Iterator[RunState]:
    """Take the run's lease for this attempt and yield what is known of it."""
    close_old_connections()
    token = f"temporal:{ULID()}"
    now = timezone.now()
    with transaction.atomic():
        run = WorkflowRun.objects.select_for_update().get(run_id=run_id, engine=Engine.TEMPORAL)
        if run.status not in RUNNABLE_STATUSES:
            raise _Over(run.status)
        workflow = get_workflow(run.workflow_id, run.workflow_version)
        if workflow is None:
            raise _again(
                now + MISSING_WORKFLOW_RECHECK,
                f"workflow {run.workflow_id} v{run.workflow_version} is not registered in "
                "this worker; leaving the run for a worker that has it",
            )
        claim = Claim(token, now)
        if not run.holds_scope:
            take_scopes(claim, [run])
        if run in claim.handed_back:  # rolled back: nothing taken
            raise _again(now + SCOPE_WAIT, "another run holds an object of its scope")
        claim.lease(run)
        claim.save()
        state = RunState(run=run, workflow=workflow)
        load_records([state])
    try:
        yield state
    finally:
        close_old_connections()


@contextmanager
def _recording(state: RunState) -> Iterator[Recorder]:
    recorder = Recorder(worker_id=state.run.leased_by)
    with recorder.recording([state]) as held:
        if state.run.run_id not in held:
            raise ApplicationError(
                f"Run {state.run.run_id}: a later attempt holds it; this one records nothing."
            )
        yield recorder


def _read_scope(state: RunState) -> dict[str, object]:
    try:
        return snapshot_scopes(org_id=state.run.org_id, scopes=[state.run.scope])[0]
    except PlatformError as error:
        raise _again(timezone.now() + SNAPSHOT_RETRY, f"scope not read: {error.message}") from None


# ---- answers -----------------------------------------------------------------------------


def _again(at: datetime, why: str) -> ApplicationError:
    """Return the error that has Temporal try the activity again at ``at``."""
    delay = max(at - timezone.now(), timedelta(milliseconds=1))
    return ApplicationError(
        why, type="TryAgain", next_retry_delay=delay, category=ApplicationErrorCategory.BENIGN
    )


def _progress(state: RunState) -> Progress:
    def over(step_id: str, kind: str) -> bool:
        record = state.records.get((step_id, kind))
        return record is not None and record.status in OUTCOMES

    steps = [s.id for s in state.workflow.steps]
    return Progress(
        status=state.run.status,
        applied=[
            s
            for s in steps
            if (r := state.records.get((s, FORWARD))) and r.status == StepExecution.Status.SUCCEEDED
        ],
        undone=[s for s in steps if over(s, COMPENSATION)],
        finishing=_finishing(state),
    )


def _outcome(state: RunState, outcome: str) -> Outcome:
    return Outcome(outcome=outcome, status=state.run.status, finishing=_finishing(state))


def _finishing(state: RunState) -> bool:
    """True when the run's last outcome is recorded but not its end (its scope's state is
    read by calls, in ``finish``)."""
    return state.run.status in RUNNABLE_STATUSES and isinstance(
        state.next_move(timezone.now()), Finish
    )


def _describe(move: Action | Wait | Finish) -> str:
    if isinstance(move, Action):
        return f"{move.kind} {move.step_id!r}"
    if isinstance(move, Finish):
        return f"to end {move.status}"
    return f"a retry at {move.until.isoformat()}"
