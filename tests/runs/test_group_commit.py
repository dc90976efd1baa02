"""Outcomes recorded a group at a time: one transaction for many runs, fenced per run."""

from collections import Counter
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.models import ServiceAccount
from mutations import chain
from mutations.connectors.sandbox import open_campaigns
from mutations.models import Mutation, RuntimeEvent, SandboxOperation
from runs import engine
from runs.claims import claim_runs
from runs.models import RunStatus, StepExecution, WorkflowRun
from runs.records import Recorder
from runs.runner import Worker
from runs.saga import Action
from runs.state import RunState
from tests.conftest import allow_everything, rebalance, submit

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = "runner-a"


def claimed_runs(agent: ServiceAccount, count: int) -> list[RunState]:
    allow_everything(agent.workspace)
    for n in range(count):  # each in a market of its own: their scopes do not overlap
        document = rebalance()
        document["action"]["scope"]["market"] = f"m{n}"
        submit(agent, document)
    states = claim_runs(WORKER, count)
    assert len(states) == count
    return states


def first_calls(states: list[RunState]) -> list[tuple[RunState, engine.Called]]:
    calls = []
    for state in states:
        move = state.next_move(timezone.now())
        assert isinstance(move, Action)
        calls.append((state, engine.attempt(state, move)))
    return calls


def test_a_group_of_outcomes_is_one_transaction_with_one_statement_per_table(
    agent: ServiceAccount, markets: Any
) -> None:
    states = claimed_runs(agent, 6)
    calls = first_calls(states)
    recorder = Recorder(worker_id=WORKER)

    with CaptureQueriesContext(connection) as queries, recorder.recording(states) as held:
        assert held == {s.run.run_id for s in states}
        for state, called in calls:
            assert engine.record(recorder, state, called) is False  # goes on

    # Django logs an executemany (one statement, one round trip) as "<n> times: <sql>".
    statements = [q["sql"].split(" times: ")[-1] for q in queries.captured_queries]
    inserts = Counter(sql.split('"')[1] for sql in statements if sql.startswith("INSERT"))
    # Mutation Log rows, step executions and events: one INSERT each for six outcomes.
    assert inserts["mutations_mutation"] == 1
    assert inserts["runs_stepexecution"] == 1
    assert inserts["mutations_runtimeevent"] == 1
    assert Mutation.objects.filter(org=agent.org).count() == 6
    assert StepExecution.objects.filter(org=agent.org, status="succeeded").count() == 6
    assert chain.verify(agent.org_id).ok
    assert set(WorkflowRun.objects.values_list("current_step_id", flat=True)) == {
        "debit_source_channel"
    }


def test_a_run_whose_lease_was_lost_is_left_out_of_the_group(
    agent: ServiceAccount, markets: Any
) -> None:
    states = claimed_runs(agent, 3)
    calls = first_calls(states)
    lost = states[1].run
    # Its lease ran out and another runner took it between the call and the record.
    WorkflowRun.objects.filter(pk=lost.pk).update(leased_by="runner-b")
    recorder = Recorder(worker_id=WORKER)

    with recorder.recording(states) as held:
        for state, called in calls:
            if state.run.run_id in held:
                engine.record(recorder, state, called)

    assert held == {states[0].run.run_id, states[2].run.run_id}
    assert not Mutation.objects.filter(run=lost).exists()  # the new holder records it
    assert not StepExecution.objects.filter(run=lost).exists()
    assert Mutation.objects.filter(org=agent.org).count() == 2
    assert WorkflowRun.objects.get(pk=lost.pk).leased_by == "runner-b"


def test_a_group_that_fails_writes_nothing(
    agent: ServiceAccount, markets: Any, caplog: pytest.LogCaptureFixture
) -> None:
    states = claimed_runs(agent, 2)
    calls = first_calls(states)
    recorder = Recorder(worker_id=WORKER)

    with (
        caplog.at_level("INFO", logger="runs.engine"),
        pytest.raises(RuntimeError),
        recorder.recording(states),
    ):
        engine.record(recorder, *calls[0])
        raise RuntimeError("the database went away mid-group")
    assert "outcome=applied" not in caplog.text  # nor says it did
    WorkflowRun.objects.update(leased_by="", lease_expires_at=None)  # as the runner does

    assert not Mutation.objects.filter(org=agent.org).exists()
    assert not RuntimeEvent.objects.filter(org=agent.org, kind="step_succeeded").exists()
    # A runner drives them to the end from what was committed; each key applied once.
    Worker().run(until_idle=True)
    assert set(WorkflowRun.objects.values_list("status", flat=True)) == {RunStatus.COMPLETED}
    assert Mutation.objects.filter(org=agent.org).count() == 4
    # The calls made before the failed group were answered again, not applied again.
    first_keys = [called.attempt.key for _, called in calls]
    replays = SandboxOperation.objects.filter(idempotency_key__in=first_keys)
    assert sorted(replays.values_list("replays", flat=True)) == [1, 1]
    assert SandboxOperation.objects.filter(org=agent.org, replays__gt=0).count() == 2


@pytest.fixture
def markets(agent: ServiceAccount) -> None:
    markets = [f"m{n}" for n in range(6)]
    open_campaigns(org_id=agent.org_id, markets=markets, daily_budget_micros=10**12)
