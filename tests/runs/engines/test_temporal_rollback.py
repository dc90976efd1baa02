"""An operator's retried rollback of a run on Temporal: the run's workflow starts again and
finishes the compensations on a real Temporal dev server."""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus

from controlplane.models import ServiceAccount
from mutations.models import Mutation, SandboxFault
from mutations.services import Surface
from runs.engines.temporal.worker import TemporalWorker, connect
from runs.models import RunStatus, WorkflowRun
from runs.rollback import retry_rollback, rollback_evidence
from tests.aio import run_async
from tests.conftest import budget, plan_stuck_compensation, rebalance, submit

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_SECONDS = 60.0


@contextmanager
def worker_running() -> Iterator[None]:
    """Run a Temporal worker in this process, as a deployment keeps one running."""
    worker = TemporalWorker()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            worker.run()
        except BaseException as error:  # re-raised in the test's thread
            errors.append(error)

    thread = threading.Thread(target=work, name="temporal-worker")
    thread.start()
    try:
        yield
    finally:
        worker.stop()
        thread.join(30)
    if errors:
        raise errors[0]


def wait_for(what: str, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not {what} after {WAIT_SECONDS:g}s")
        time.sleep(0.05)


def run_status(run: WorkflowRun) -> str:
    run.refresh_from_db()
    return run.status


def workflow_status(run_id: str) -> WorkflowExecutionStatus | None:
    async def describe() -> WorkflowExecutionStatus | None:
        client = await connect()
        return (await client.get_workflow_handle(run_id).describe()).status

    return run_async(describe())


def test_retried_rollback_of_a_temporal_run_finishes_on_temporal(
    agent: ServiceAccount, temporal: Any
) -> None:
    document = rebalance()
    # Fatal, not transient: the compensation fails for good at once (no retries to wait).
    plan_stuck_compensation(agent, document, undo=SandboxFault.Kind.FATAL)
    run = WorkflowRun.objects.get(decision=submit(agent, document))
    with worker_running():
        wait_for("compensation_failed", lambda: run_status(run) == RunStatus.COMPENSATION_FAILED)
        # The run's workflow ends with the run (what an operator finds when they retry).
        wait_for(
            "closed on Temporal",
            lambda: workflow_status(run.run_id) == WorkflowExecutionStatus.COMPLETED,
        )
        assert run.engine == "temporal" and run.dispatched_at is not None
        meta_before_run = budget(agent.org, "meta") + 800_000_000
        SandboxFault.objects.filter(platform="meta").delete()  # the platform recovered

        retried = retry_rollback(
            run_id=run.run_id, org_id=agent.org_id, requested_by="user:ops", surface=Surface.API
        )
        assert (retried.status, retried.dispatched_at) == (RunStatus.COMPENSATING, None)
        wait_for("compensated", lambda: run_status(run) == RunStatus.COMPENSATED)

    assert run.dispatched_at is not None
    assert budget(agent.org, "meta") == meta_before_run
    assert run.before_state_hash == run.after_state_hash
    statuses = list(Mutation.objects.filter(run=run).values_list("status", flat=True))
    assert statuses == ["success", "failed", "failed", "rolled_back"]
    assert rollback_evidence(run)["remaining"] == []
