"""The Temporal workflow of a Backstop run. It only orchestrates.

Its input, the run's ``Plan``, is pinned when the run is handed to Temporal: the workflow
version's steps, in order, with each call's timeout and retry policy. The workflow walks
it: the forward steps in order until one fails for good, then the compensations of the
applied steps in reverse order (last in, first out). Each step and each compensation is
one activity (``runs.engines.temporal.activities``) that calls the platform with the
step's stable idempotency key and writes the Mutation Log, exactly as the built-in
engine does. A definition registered later never changes a run in flight: nothing here
reads the registry, the clock or the database, so a replay of the history takes the same
path.

This module is loaded in Temporal's workflow sandbox: it imports nothing of Django.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

WORKFLOW_NAME = "BackstopRun"
BEGIN, ACT, FINISH = "backstop.begin", "backstop.act", "backstop.finish"
FORWARD, COMPENSATION = "forward", "compensation"
RUNNING, COMPENSATING = "running", "compensating"

# Seconds an activity may take beyond its platform call's timeout (recording the outcome).
RECORD_MARGIN = 5.0
# Backstop's own steps (start, finish): a short timeout, retried until the database answers.
BOOKKEEPING_TIMEOUT = timedelta(seconds=30)
BOOKKEEPING_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_attempts=0)


@dataclass
class Retry:
    """A call's retry policy (``runs.retry.RetryPolicy``), as the workflow sees it."""

    max_attempts: int
    initial_interval: float
    backoff_coefficient: float
    maximum_interval: float


@dataclass
class Call:
    """One platform call of the plan: a forward step or a compensation."""

    name: str
    timeout: float
    retry: Retry
    window: float | None = None  # compensations: seconds after the first attempt to give up


@dataclass
class PlannedStep:
    step_id: str
    forward: Call
    compensation: Call | None  # None: the step declares none; its skip is recorded


@dataclass
class Plan:
    """The run as pinned at its start: which workflow version, which steps."""

    run_id: str
    workflow_id: str
    workflow_version: int
    steps: list[PlannedStep]


@dataclass
class Progress:
    """Where a run stands when its workflow starts (a first start, or a retried rollback)."""

    status: str
    applied: list[str]  # forward steps applied
    undone: list[str]  # applied steps whose compensation is over (succeeded, failed, skipped)
    finishing: bool = False  # ended; its scope's state still to read (a workflow restarted)


@dataclass
class Act:
    run_id: str
    step_id: str
    kind: str


@dataclass
class Outcome:
    """What an activity recorded: applied, failed (for good) or skipped; the run's status
    after it; whether the run ended and its scope's state is still to be read."""

    outcome: str
    status: str
    finishing: bool = False


@workflow.defn(name=WORKFLOW_NAME)
class BackstopRun:
    @workflow.run
    async def run(self, plan: Plan) -> str:
        progress: Progress = await self._bookkeeping(BEGIN, plan.run_id, Progress)
        status, applied = progress.status, list(progress.applied)
        finishing = progress.finishing
        if status == RUNNING and not finishing:
            for step in plan.steps:
                if step.step_id in applied:
                    continue
                outcome = await self._act(plan.run_id, step, FORWARD, step.forward)
                status, finishing = outcome.status, outcome.finishing
                if outcome.outcome != "applied":
                    break
                applied.append(step.step_id)
        if status == COMPENSATING and not finishing:
            for step in reversed([s for s in plan.steps if s.step_id in applied]):
                if step.step_id in progress.undone:
                    continue
                call = step.compensation or step.forward  # a skip makes no call
                outcome = await self._act(plan.run_id, step, COMPENSATION, call)
                status, finishing = outcome.status, outcome.finishing
                if status != COMPENSATING or finishing:
                    break
        if finishing:
            ended: Outcome = await self._bookkeeping(FINISH, plan.run_id, Outcome)
            status = ended.status
        return status

    async def _bookkeeping(self, name: str, run_id: str, result_type: type) -> Any:
        return await workflow.execute_activity(
            name,
            run_id,
            result_type=result_type,
            start_to_close_timeout=BOOKKEEPING_TIMEOUT,
            retry_policy=BOOKKEEPING_RETRY,
        )

    async def _act(self, run_id: str, step: PlannedStep, kind: str, call: Call) -> Outcome:
        """Make one call of the plan, retried by Temporal as its policy says."""
        return await workflow.execute_activity(
            ACT,
            Act(run_id=run_id, step_id=step.step_id, kind=kind),
            result_type=Outcome,
            start_to_close_timeout=timedelta(seconds=call.timeout + RECORD_MARGIN),
            retry_policy=retry_policy(call.retry),
        )


def retry_policy(retry: Retry) -> RetryPolicy:
    """Return Temporal's retry policy for a call: the step's backoff. The activity counts
    the platform's answers itself, in the step's record, and stops at ``max_attempts``
    (returning a failure); Temporal keeps retrying beyond that only attempts the platform
    never answered (a worker lost, the database away), which must not use one up."""
    return RetryPolicy(
        initial_interval=timedelta(seconds=max(retry.initial_interval, 0.001)),
        backoff_coefficient=max(retry.backoff_coefficient, 1.0),
        maximum_interval=timedelta(seconds=max(retry.maximum_interval, 0.001)),
        maximum_attempts=0,
    )
