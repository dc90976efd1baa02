"""The Temporal engine under crashes and load: real `runworkflows --engine temporal` worker
processes on a real Temporal dev server and the PostgreSQL test database.

A worker SIGKILLed between a platform call and the record of its outcome is replaced;
Temporal gives the lost activity to the new worker once its start-to-close timeout passed,
and the platform replays the step's idempotency key instead of applying it again.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from temporalio.client import Client, WorkflowExecutionStatus

from controlplane.models import ServiceAccount
from mutations.models import Mutation, SandboxFault, SandboxOperation
from runs.engines.temporal.devserver import DevServer
from runs.keys import step_calls_prefix
from runs.models import Engine, RunStatus, ScopeLock, StepExecution, WorkflowRun
from runs.workflows import Workflow
from runs.workflows.extensions import load_plugin
from runs.workflows.registry import unregister
from tests.aio import run_async
from tests.conftest import allow_everything, budget, command, first_run_key, rebalance, submit
from tests.processes import Runners, stderr_of
from tests.reliability.conftest import assert_exactly_once, make_markets, replays, submit_mix

PLUGIN = "tests.reliability.quick_rebalance"
# A crashed call waits out its activity's timeout (CALL_TIMEOUT + RECORD_MARGIN) first.
CRASH_WAIT = 60
DRAIN_WAIT = 180


@pytest.fixture
def quick_rebalance(agent: ServiceAccount, temporal: DevServer) -> Iterator[Workflow]:
    """Register the short-call rebalance here as the workers do (BACKSTOP_PLUGINS), and
    let it run."""
    allow_everything(agent.workspace)
    sys.modules.pop(PLUGIN, None)
    load_plugin(PLUGIN)
    workflow: Workflow = sys.modules[PLUGIN].quick_rebalance
    yield workflow
    unregister(workflow.id, workflow.version)
    sys.modules.pop(PLUGIN, None)


def start_worker(
    runners: Runners, temporal: DevServer, *args: str, crash_at: str = ""
) -> subprocess.Popen[bytes]:
    """Start `runworkflows --engine temporal` on the test's server and task queue."""
    return runners.start(
        "--engine",
        "temporal",
        *args,
        crash_at=crash_at,
        TEMPORAL_ADDRESS=temporal.address,
        TEMPORAL_TASK_QUEUE=settings.TEMPORAL_TASK_QUEUE,
        BACKSTOP_ENGINE="temporal",
        BACKSTOP_PLUGINS=PLUGIN,
    )


def assert_chain_verifies() -> None:
    assert "the chain verifies" in command("verifylog")


# A compensated run makes three calls: its debit (applied), its credit (refused for good),
# then the compensation of its debit; a completed run makes two: its debit and its credit.
COMPENSATED = [
    ("debit_source_channel", "success"),
    ("credit_target_channel", "failed"),
    ("credit_source_channel", "rolled_back"),
]
COMPLETED = [("debit_source_channel", "success"), ("credit_target_channel", "success")]


@pytest.mark.parametrize(
    ("call", "fails"),
    [
        pytest.param(1, True, id="forward-step"),
        pytest.param(3, True, id="compensation"),
        pytest.param(2, False, id="last-step-of-a-completed-run"),
    ],
)
def test_worker_killed_after_a_platform_call_is_replaced_and_applies_each_key_once(
    agent: ServiceAccount,
    runners: Runners,
    temporal: DevServer,
    quick_rebalance: Workflow,
    call: int,
    fails: bool,
) -> None:
    document = rebalance(amount=25)
    document["type"] = document["action"]["type"] = quick_rebalance.decision_type
    if fails:
        SandboxFault.objects.create(
            org=agent.org,
            platform="google",
            kind=SandboxFault.Kind.FATAL,
            key_prefix=step_calls_prefix(first_run_key(document), "credit_target_channel"),
        )
    decision = submit(agent, document)
    run = WorkflowRun.objects.get(decision=decision)
    assert (run.engine, run.workflow_id) == (Engine.TEMPORAL, quick_rebalance.id)
    meta_before = budget(agent.org, "meta")

    crashed = start_worker(runners, temporal, crash_at=f"after_platform_call:{call}")
    assert crashed.wait(timeout=CRASH_WAIT) == -signal.SIGKILL, stderr_of(crashed)
    replacement = start_worker(runners, temporal, "--until-idle")
    assert replacement.wait(timeout=CRASH_WAIT) == 0, stderr_of(replacement)

    run.refresh_from_db()
    rows = list(Mutation.objects.filter(run=run).values_list("step_id", "status"))
    if fails:
        assert (run.status, rows) == (RunStatus.COMPENSATED, COMPENSATED)
        assert run.before_state_hash == run.after_state_hash
        assert budget(agent.org, "meta") == meta_before
    else:
        assert (run.status, rows) == (RunStatus.COMPLETED, COMPLETED)
        assert budget(agent.org, "meta") == meta_before - 25_000_000
    applied = Mutation.objects.filter(run=run, status__in=["success", "rolled_back"])
    assert sorted(applied.values_list("idempotency_key", flat=True)) == sorted(
        SandboxOperation.objects.values_list("idempotency_key", flat=True)
    )
    # The call whose answer died with the worker was asked again and replayed, not re-applied.
    assert replays() == 1
    assert_chain_verifies()
    # Temporal closed the workflow; the new worker ran what the killed one left.
    statuses, pids = run_async(temporal_outcome(temporal.address, [run.run_id]))
    assert statuses == {WorkflowExecutionStatus.COMPLETED}
    assert pids == {crashed.pid, replacement.pid}


def test_two_workers_drain_200_decisions_each_key_applied_once(
    agent: ServiceAccount, runners: Runners, temporal: DevServer
) -> None:
    markets = make_markets(agent, 100)
    plan = submit_mix(agent, 200, markets, fail_every=3)

    workers = [start_worker(runners, temporal, "--until-idle") for _ in range(2)]
    for worker in workers:
        assert worker.wait(timeout=DRAIN_WAIT) == 0, stderr_of(worker)

    assert set(WorkflowRun.objects.values_list("engine", flat=True)) == {Engine.TEMPORAL}
    assert_exactly_once(plan)
    assert replays() == 0  # no platform call was made twice for one key
    assert not StepExecution.objects.filter(attempts__gt=1).exists()
    assert_chain_verifies()
    # Every lease and scope lock was handed back.
    assert not WorkflowRun.objects.exclude(leased_by="").exists()
    assert not ScopeLock.objects.exists()
    run_ids = list(WorkflowRun.objects.values_list("run_id", flat=True))
    statuses, pids = run_async(temporal_outcome(temporal.address, run_ids))
    assert statuses == {WorkflowExecutionStatus.COMPLETED}
    assert pids == {worker.pid for worker in workers}  # both did work


async def temporal_outcome(address: str, run_ids: list[str]) -> tuple[set[Any], set[int]]:
    """Return the statuses of the runs' workflows and the process ids of the workers that
    ran their activities (a worker's identity is host:pid:suffix), from Temporal's own
    histories: an activity's started event names the worker of its last attempt."""
    client = await Client.connect(address)
    statuses: set[Any] = set()
    pids: set[int] = set()
    for run_id in run_ids:
        handle = client.get_workflow_handle(run_id)
        statuses.add((await handle.describe()).status)
        async for event in handle.fetch_history_events():
            if event.HasField("activity_task_started_event_attributes"):
                identity = event.activity_task_started_event_attributes.identity
                pids.add(int(identity.split(":")[1]))
    return statuses, pids
