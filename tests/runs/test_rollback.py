"""compensation_failed, its evidence, an operator's retry, and pinned workflow versions."""

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from controlplane.models import Role, ServiceAccount
from mutations.models import Mutation, RuntimeEvent, SandboxFault
from mutations.services import Surface
from runs.keys import step_calls_prefix
from runs.models import RunStatus, WorkflowRun
from runs.rollback import RollbackRefused, retry_rollback, rollback_evidence
from runs.runner import Worker
from runs.workflows import Compensation, Step, Workflow, register
from runs.workflows.builtin import budget_change, invert_budget_change
from runs.workflows.registry import unregister
from tests.conftest import (
    allow_everything,
    budget,
    drain,
    first_run_key,
    plan_stuck_compensation,
    rebalance,
    submit,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stuck_compensation(agent: ServiceAccount) -> WorkflowRun:
    """A run whose credit fails for good and whose compensation keeps failing."""
    document = rebalance()
    plan_stuck_compensation(agent, document)
    decision = submit(agent, document)
    drain()
    return WorkflowRun.objects.get(decision=decision)


def test_compensation_that_keeps_failing_never_ends_compensated(
    stuck_compensation: WorkflowRun,
) -> None:
    run = stuck_compensation
    evidence = rollback_evidence(run)

    assert run.status == RunStatus.COMPENSATION_FAILED
    assert evidence["rollback_triggered"] is True
    assert evidence["rollback_mode"] == "lifo_stack"
    assert evidence["failed_step_id"] == "credit_target_channel"
    assert evidence["matched_policy_ids"] == ["allow-market-rebalance"]
    assert (evidence["compensations_dispatched"], evidence["compensations_skipped"]) == (1, 0)
    [left] = evidence["remaining"]
    assert left["compensation_id"] == "credit_source_channel"
    assert left["platform"] == "meta"
    assert left["applied_change"] == {"daily_budget_delta_micros": -800_000_000}
    assert "backend_error" in left["reason"]
    assert evidence["rollback_finished_at"] is not None


def test_operator_retry_finishes_the_rollback(
    agent: ServiceAccount, stuck_compensation: WorkflowRun
) -> None:
    meta_before_run = budget(agent.org, "meta") + 800_000_000
    SandboxFault.objects.filter(platform="meta").delete()  # the platform recovered

    retry_rollback(
        run_id=stuck_compensation.run_id,
        org_id=agent.org_id,
        requested_by="user:ops",
        surface=Surface.DASHBOARD,
    )
    drain()

    run = WorkflowRun.objects.get(pk=stuck_compensation.pk)
    assert run.status == RunStatus.COMPENSATED
    assert budget(agent.org, "meta") == meta_before_run
    assert run.before_state_hash == run.after_state_hash
    statuses = list(Mutation.objects.filter(run=run).values_list("status", flat=True))
    assert statuses == ["success", "failed", "failed", "rolled_back"]
    assert rollback_evidence(run)["rollback_requested_by"] == "user:ops"
    assert rollback_evidence(run)["remaining"] == []


@pytest.mark.parametrize(
    ("url", "status", "surface"),
    [("/runs/{}/rollback/", 302, "dashboard"), ("/api/v1/runs/{}/rollback/", 202, "api")],
)
def test_retried_rollback_records_the_surface_it_was_retried_from(
    stuck_compensation: WorkflowRun,
    client: Client,
    member: Any,
    url: str,
    status: int,
    surface: str,
) -> None:
    operator = member("ops", Role.OPERATOR)
    client.force_login(operator)

    assert client.post(url.format(stuck_compensation.run_id)).status_code == status

    retried = stuck_compensation.events.get(
        kind=RuntimeEvent.Kind.ROLLBACK_STARTED, user_id=operator.pk
    )
    assert retried.surface == surface
    assert retried.payload["requested_by"] == "user:ops"


def test_retry_is_refused_for_a_run_that_did_not_fail_its_rollback(agent: ServiceAccount) -> None:
    decision = submit(agent, rebalance())
    drain()
    run = WorkflowRun.objects.get(decision=decision)
    with pytest.raises(RollbackRefused, match="only a compensation_failed run"):
        retry_rollback(
            run_id=run.run_id, org_id=agent.org_id, requested_by="user:ops", surface=Surface.API
        )
    assert WorkflowRun.objects.get(pk=run.pk).status == RunStatus.COMPLETED


@pytest.fixture
def versioned(agent: ServiceAccount) -> Iterator[None]:
    allow_everything(agent.workspace)

    def version(number: int, steps: int) -> Workflow:
        return Workflow(
            id="test_versioned",
            version=number,
            decision_type="test_versioned",
            scope=lambda d: {"meta": {"market": "all"}},
            validate_action=lambda action: {},
            steps=tuple(
                Step(
                    id=f"raise_{n}",
                    build=lambda d: budget_change("meta", {"market": "all"}, 1_000_000),
                    compensation=Compensation(id=f"lower_{n}", build=invert_budget_change),
                )
                for n in range(steps)
            ),
        )

    register(version(1, 1))
    yield
    unregister("test_versioned", 1)
    unregister("test_versioned", 2)


def test_run_in_flight_keeps_the_version_it_started_on(
    agent: ServiceAccount, versioned: None
) -> None:
    document = rebalance()
    document["type"] = document["action"]["type"] = "test_versioned"
    SandboxFault.objects.create(
        org=agent.org,
        platform="meta",
        kind="rate_limit",
        remaining=1,
        key_prefix=step_calls_prefix(first_run_key(document), "raise_0"),
    )
    decision = submit(agent, document)
    Worker().run(once=True)  # first attempt: rate limited, the run now waits in flight
    register(
        Workflow(
            id="test_versioned",
            version=2,
            decision_type="test_versioned",
            scope=lambda d: {"meta": {"market": "all"}},
            validate_action=lambda action: {},
            steps=tuple(
                Step(
                    id=f"raise_{n}",
                    build=lambda d: budget_change("meta", {"market": "all"}, 1_000_000),
                    compensation=Compensation(id=f"lower_{n}", build=invert_budget_change),
                )
                for n in range(3)
            ),
        )
    )
    drain()

    run = WorkflowRun.objects.get(decision=decision)
    assert (run.workflow_version, run.status) == (1, RunStatus.COMPLETED)
    assert list(Mutation.objects.filter(run=run).values_list("step_id", flat=True)) == ["raise_0"]
    newer = submit(agent, {**document, "id": rebalance()["id"]})
    drain()
    assert WorkflowRun.objects.get(decision=newer).workflow_version == 2


def test_runner_without_the_runs_version_leaves_it_alone(
    agent: ServiceAccount, versioned: None, caplog: pytest.LogCaptureFixture
) -> None:
    document = rebalance()
    document["type"] = document["action"]["type"] = "test_versioned"
    decision = submit(agent, document)
    unregister("test_versioned", 1)  # this runner was deployed without version 1

    Worker().run(once=True)

    run = WorkflowRun.objects.get(decision=decision)
    assert (run.status, run.leased_by) == (RunStatus.PENDING, "")
    assert not Mutation.objects.filter(run=run).exists()
    assert "test_versioned v1 is not registered in this runner" in caplog.text
