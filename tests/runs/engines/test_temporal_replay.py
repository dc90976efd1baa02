"""A run's Temporal history replays the same way after a new version of its workflow is
registered: the workflow reads nothing but the plan pinned at the run's start."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from controlplane.models import ServiceAccount
from mutations.models import Mutation, RuntimeEvent
from runs.engines.temporal.dispatch import plan_for
from runs.engines.temporal.worker import connect
from runs.engines.temporal.workflow import (
    ACT,
    BEGIN,
    BOOKKEEPING_TIMEOUT,
    FINISH,
    WORKFLOW_NAME,
    Act,
    BackstopRun,
    Plan,
)
from runs.models import StepExecution, WorkflowRun
from runs.workflows import get_workflow, register
from runs.workflows.builtin import execute_rebalance_spend
from runs.workflows.registry import unregister
from tests.aio import run_async
from tests.conftest import submit
from tests.runs.engines.test_temporal_workflows import close_on_temporal, seed_like
from tests.temporal import drain_on_temporal

pytestmark = pytest.mark.django_db(transaction=True)

CONVERTER = DataConverter.default.payload_converter


@workflow.defn(name=WORKFLOW_NAME, sandboxed=False)
class EndsFirst:
    """A BackstopRun that ends the run before making its calls: another order of activities."""

    @workflow.run
    async def run(self, plan: Plan) -> str:
        status = ""
        for name in (BEGIN, FINISH):
            status = str(
                await workflow.execute_activity(
                    name, plan.run_id, start_to_close_timeout=BOOKKEEPING_TIMEOUT
                )
            )
        return status


@pytest.fixture
def reordered() -> Iterator[None]:
    """Version 2 of the rebalance: the same steps the other way round (credit first)."""
    yield
    unregister(execute_rebalance_spend.id, 2)


def history_of(run_id: str) -> WorkflowHistory:
    async def fetch() -> WorkflowHistory:
        client = await connect()
        return await client.get_workflow_handle(run_id).fetch_history()

    return run_async(fetch())


def scheduled(history: WorkflowHistory) -> list[tuple[str, Any]]:
    """Return the activities the workflow scheduled, in order, with their input."""
    calls = []
    for event in history.events:
        if event.event_type != EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            continue
        attributes = event.activity_task_scheduled_event_attributes
        name = attributes.activity_type.name
        [argument] = CONVERTER.from_payloads(
            attributes.input.payloads, [Act if name == ACT else str]
        )
        calls.append((name, argument))
    return calls


def records(run: WorkflowRun) -> list[Any]:
    return [
        *Mutation.objects.filter(run=run).order_by("sequence").values(),
        *StepExecution.objects.filter(run=run).order_by("id").values(),
        *RuntimeEvent.objects.filter(run=run).order_by("event_id").values(),
        *WorkflowRun.objects.filter(pk=run.pk).values(),
    ]


def test_history_replays_after_a_new_version_is_registered(
    agent: ServiceAccount, temporal: Any, reordered: None
) -> None:
    decision = submit(agent, seed_like(agent))
    drain_on_temporal()
    run = WorkflowRun.objects.get(decision=decision)
    assert close_on_temporal(run.run_id) == "compensated"
    history = history_of(run.run_id)
    before = records(run)

    version_2 = register(
        dataclasses.replace(
            execute_rebalance_spend, version=2, steps=execute_rebalance_spend.steps[::-1]
        )
    )
    assert get_workflow(run.workflow_id, run.workflow_version) is execute_rebalance_spend
    assert [s.step_id for s in plan_for(run, version_2).steps] == [
        "credit_target_channel",
        "debit_source_channel",
    ]
    result = run_async(Replayer(workflows=[BackstopRun]).replay_workflow(history))

    assert result.replay_failure is None
    started = history.events[0].workflow_execution_started_event_attributes
    [pinned] = CONVERTER.from_payloads(started.input.payloads, [Plan])
    assert (pinned.workflow_version, [s.step_id for s in pinned.steps]) == (
        1,
        ["debit_source_channel", "credit_target_channel"],
    )
    assert scheduled(history) == [
        (BEGIN, run.run_id),
        (ACT, Act(run.run_id, "debit_source_channel", "forward")),
        (ACT, Act(run.run_id, "credit_target_channel", "forward")),  # retried by Temporal
        (ACT, Act(run.run_id, "debit_source_channel", "compensation")),
    ]
    assert records(run) == before


def test_replay_with_another_order_of_activities_is_refused(
    agent: ServiceAccount, temporal: Any
) -> None:
    decision = submit(agent, seed_like(agent))
    drain_on_temporal()
    run = WorkflowRun.objects.get(decision=decision)
    close_on_temporal(run.run_id)
    history = history_of(run.run_id)

    refused = (
        "Activity type of scheduled event 'backstop.act' does not match activity type of "
        "activity command 'backstop.finish'"
    )
    with pytest.raises(NondeterminismError, match=refused):
        run_async(Replayer(workflows=[EndsFirst]).replay_workflow(history))
