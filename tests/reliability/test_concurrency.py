"""Several runner processes share the work; rollbacks are locked; versions are pinned."""

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import connections

from controlplane.models import ServiceAccount
from mutations.connectors import Change
from mutations.models import Mutation, SandboxFault, SandboxOperation
from mutations.services import Surface
from runs.keys import COMPENSATE, compensation_key, step_calls_prefix
from runs.models import RunStatus, ScopeLock, StepExecution, WorkflowRun
from runs.rollback import RollbackRefused, retry_rollback, rollback_evidence
from runs.workflows import Compensation, Step, Workflow, register
from runs.workflows.builtin import budget_change, invert_budget_change
from runs.workflows.registry import unregister
from tests.conftest import allow_everything, drain, first_run_key, rebalance, submit
from tests.processes import Runners, stderr_of
from tests.reliability.conftest import (
    assert_exactly_once,
    make_markets,
    replays,
    submit_mix,
)


def test_four_runners_drain_1000_decisions_each_step_once(
    agent: ServiceAccount, runners: Runners
) -> None:
    markets = make_markets(agent, 100)
    plan = submit_mix(agent, 1000, markets, fail_every=3)

    processes = [runners.start("--until-idle") for _ in range(4)]
    for process in processes:
        assert process.wait(timeout=300) == 0, stderr_of(process)

    assert_exactly_once(plan)
    assert replays() == 0  # no platform call was ever made twice for one key
    assert StepExecution.objects.filter(attempts__gt=1).count() == 0
    # Every lease, rollback lock and scope lock was handed back.
    assert not WorkflowRun.objects.exclude(leased_by="").exists()
    assert not WorkflowRun.objects.exclude(rollback_lock_holder="").exists()
    assert not ScopeLock.objects.exists()


def move(n: int) -> Callable[[Any], Change]:
    """Step n moves $n/day on meta (odd n) or google (even n)."""
    platform = "meta" if n % 2 else "google"
    return lambda decision: budget_change(platform, {"market": "all"}, n * 1_000_000)


@pytest.fixture
def three_step_workflow(agent: ServiceAccount) -> Iterator[Workflow]:
    """Three budget steps whose last one fails, so that two are compensated in reverse."""
    workflow = register(
        Workflow(
            id="test_three_moves",
            version=1,
            decision_type="test_three_moves",
            scope=lambda d: {"meta": {"market": "all"}, "google": {"market": "all"}},
            validate_action=lambda action: {},
            steps=tuple(
                Step(
                    id=f"move_{n}",
                    build=move(n),
                    compensation=Compensation(id=f"undo_move_{n}", build=invert_budget_change),
                )
                for n in (1, 2, 3)
            ),
        )
    )
    allow_everything(agent.workspace)
    yield workflow
    unregister(workflow.id, workflow.version)


def test_ten_concurrent_rollback_retries_compensate_each_mutation_once_in_reverse(
    agent: ServiceAccount, three_step_workflow: Workflow
) -> None:
    document = rebalance()
    document["type"] = document["action"]["type"] = "test_three_moves"
    key = first_run_key(document)
    SandboxFault.objects.create(
        org=agent.org, platform="meta", kind="fatal", key_prefix=step_calls_prefix(key, "move_3")
    )
    # Both compensations fail for now, so the run ends compensation_failed.
    for n in (1, 2):
        SandboxFault.objects.create(
            org=agent.org,
            platform="google" if n == 2 else "meta",
            kind="fatal",
            key_prefix=compensation_key(key, f"move_{n}"),
            remaining=1,
        )
    decision = submit(agent, document)
    drain()
    run = WorkflowRun.objects.get(decision=decision)
    assert run.status == RunStatus.COMPENSATION_FAILED
    assert [r["compensation_id"] for r in rollback_evidence(run)["remaining"]] == [
        "undo_move_2",
        "undo_move_1",
    ]

    outcomes: list[str] = []
    barrier = threading.Barrier(10)

    def trigger(n: int) -> None:
        barrier.wait()
        try:
            retried = retry_rollback(
                run_id=run.run_id,
                org_id=run.org_id,
                requested_by=f"user:op{n}",
                surface=Surface.DASHBOARD,
            )
            outcomes.append(retried.status)
        except RollbackRefused as refused:
            outcomes.append(str(refused))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=trigger, args=(n,)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == ["compensating"] * 10
    assert run.events.filter(kind="rollback_started", surface="dashboard").count() == 1

    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATED
    undone = list(
        Mutation.objects.filter(run=run, status="rolled_back").values_list("step_id", flat=True)
    )
    assert undone == ["undo_move_2", "undo_move_1"]  # LIFO, once each
    assert run.before_state_hash == run.after_state_hash
    assert SandboxOperation.objects.filter(idempotency_key__endswith=COMPENSATE).count() == 2


def test_twenty_concurrent_approvals_dispatch_the_run_once(
    agent: ServiceAccount, django_user_model: Any
) -> None:
    from controlplane.models import Role
    from runs.approvals import ApprovalRefused, decide

    held = submit(agent, rebalance(amount=6000))
    run = WorkflowRun.objects.get(decision=held)
    approvers = [
        django_user_model.objects.create_user(username=f"approver{n}", password="pw")
        for n in range(20)
    ]
    for user in approvers:
        agent.org.memberships.create(user=user, role=Role.APPROVER)
    outcomes: list[str] = []
    barrier = threading.Barrier(20)

    def approve(user: Any) -> None:
        barrier.wait()
        try:
            decide(
                run_id=run.run_id,
                org_id=run.org_id,
                approve=True,
                user_id=user.pk,
                actor=f"user:{user.username}",
                payload_hash=held.payload_hash,
                surface=Surface.DASHBOARD,
            )
            outcomes.append("approved")
        except ApprovalRefused:
            outcomes.append("refused")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=approve, args=(user,)) for user in approvers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["approved"] + ["refused"] * 19
    assert run.events.filter(kind="approval_decided").count() == 1
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert Mutation.objects.filter(run=run, status="success").count() == 2


def test_due_drill_is_started_once_by_three_runners(
    agent: ServiceAccount, runners: Runners
) -> None:
    from django.utils import timezone

    from controlplane.models import Drill, DrillPlan

    plan = DrillPlan.objects.create(
        org=agent.org,
        workspace=agent.workspace,
        workflow_id="execute_rebalance_spend",
        step_id="credit_target_channel",
        fault="rate_limit",
        every_seconds=604_800,
        next_run_at=timezone.now(),
        created_by="user:ops",
    )
    processes = [runners.start("--until-idle") for _ in range(3)]
    for process in processes:
        assert process.wait(timeout=60) == 0, stderr_of(process)

    drills = Drill.objects.filter(plan=plan)
    assert drills.count() == 1
    assert WorkflowRun.objects.get(pk=drills.get().run_id).status == RunStatus.COMPENSATED


def test_eight_runners_writing_10000_mutations_leave_a_chain_that_verifies(
    agent: ServiceAccount, runners: Runners
) -> None:
    from mutations import chain

    markets = make_markets(agent, 200)
    plan = submit_mix(agent, 3334, markets, fail_every=1)  # 3 mutations each: 10,002

    processes = [runners.start("--until-idle") for _ in range(8)]
    for process in processes:
        assert process.wait(timeout=600) == 0, stderr_of(process)

    assert Mutation.objects.filter(org=agent.org).count() == 10_002
    result = chain.verify(agent.org_id)
    assert (result.ok, result.checked, result.last_sequence) == (True, 10_002, 10_002), result
    assert_exactly_once(plan)
