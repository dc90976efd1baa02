"""How runs end: completed, failed, compensated, compensation_failed, and exactly-once effects."""

from collections.abc import Iterator
from typing import Any

import pytest

from controlplane.models import ServiceAccount
from mutations.models import Mutation, RuntimeEvent, SandboxFault, SandboxOperation
from runs.keys import step_calls_prefix
from runs.models import RunStatus, StepExecution, WorkflowRun
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


def fault(agent: ServiceAccount, platform: str, kind: str, **fields: Any) -> SandboxFault:
    return SandboxFault.objects.create(org=agent.org, platform=platform, kind=kind, **fields)


def statuses(decision_id: str) -> list[tuple[str, str]]:
    return list(Mutation.objects.filter(decision_id=decision_id).values_list("platform", "status"))


def test_all_steps_succeeding_completes_with_two_success_rows(agent: ServiceAccount) -> None:
    meta, google = budget(agent.org, "meta"), budget(agent.org, "google")
    decision = submit(agent, rebalance())
    drain()

    run = WorkflowRun.objects.get(decision=decision)
    assert run.status == RunStatus.COMPLETED
    assert run.current_step_id == "workflow_complete"
    assert statuses(decision.id) == [("meta", "success"), ("google", "success")]
    assert budget(agent.org, "meta") == meta - 800_000_000
    assert budget(agent.org, "google") == google + 800_000_000
    assert run.before_state_hash != run.after_state_hash


def test_rate_limited_credit_compensates_debit(agent: ServiceAccount) -> None:
    meta = budget(agent.org, "meta")
    fault(agent, "google", SandboxFault.Kind.RATE_LIMIT, retry_after_seconds=120)
    decision = submit(agent, rebalance())
    drain()

    run = WorkflowRun.objects.get(decision=decision)
    assert run.status == RunStatus.COMPENSATED
    assert statuses(decision.id) == [
        ("meta", "success"),
        ("google", "failed"),
        ("meta", "rolled_back"),
    ]
    credit = StepExecution.objects.get(run=run, step_id="credit_target_channel")
    assert credit.attempts == 3  # BUDGET_RETRY.max_attempts
    assert [e["kind"] for e in credit.errors] == ["rate_limit"] * 3
    assert budget(agent.org, "meta") == meta
    assert run.before_state_hash == run.after_state_hash


def test_fatal_first_step_fails_with_nothing_to_undo(agent: ServiceAccount) -> None:
    fault(agent, "meta", SandboxFault.Kind.FATAL)
    decision = submit(agent, rebalance())
    drain()

    run = WorkflowRun.objects.get(decision=decision)
    assert run.status == RunStatus.FAILED
    assert run.failed_step_id == "debit_source_channel"
    assert statuses(decision.id) == [("meta", "failed")]
    step = StepExecution.objects.get(run=run)
    assert step.attempts == 1  # a fatal error is not retried
    terminal = RuntimeEvent.objects.filter(run=run).last()
    assert terminal is not None and terminal.payload["terminal_status"] == "failed"
    assert run.before_state_hash == run.after_state_hash


def test_transient_errors_that_recover_complete(agent: ServiceAccount) -> None:
    fault(agent, "google", SandboxFault.Kind.TRANSIENT, remaining=2)
    decision = submit(agent, rebalance())
    drain()

    run = WorkflowRun.objects.get(decision=decision)
    assert run.status == RunStatus.COMPLETED
    assert StepExecution.objects.get(run=run, step_id="credit_target_channel").attempts == 3
    retries = RuntimeEvent.objects.filter(run=run, kind=RuntimeEvent.Kind.STEP_RETRY_SCHEDULED)
    assert retries.count() == 2


def test_ambiguous_outcome_applies_once(agent: ServiceAccount) -> None:
    google = budget(agent.org, "google")
    fault(agent, "google", SandboxFault.Kind.AMBIGUOUS, remaining=1)
    decision = submit(agent, rebalance())
    drain()

    run = WorkflowRun.objects.get(decision=decision)
    assert run.status == RunStatus.COMPLETED
    assert budget(agent.org, "google") == google + 800_000_000  # applied once, not twice
    assert SandboxOperation.objects.filter(platform="google").count() == 1


def test_failing_compensation_ends_compensation_failed(agent: ServiceAccount) -> None:
    meta = budget(agent.org, "meta")
    document = rebalance()
    plan_stuck_compensation(agent, document)
    decision = submit(agent, document)
    drain()

    run = WorkflowRun.objects.get(decision=decision)
    assert run.status == RunStatus.COMPENSATION_FAILED
    assert run.current_step_id == "compensation_incomplete"
    assert statuses(decision.id) == [("meta", "success"), ("google", "failed"), ("meta", "failed")]
    undo = StepExecution.objects.get(run=run, kind="compensation")
    assert undo.attempts == 5  # the compensation's own retry policy
    assert budget(agent.org, "meta") == meta - 800_000_000  # a person must finish the job
    assert run.before_state_hash != run.after_state_hash
    terminal = RuntimeEvent.objects.filter(run=run).last()
    assert terminal is not None
    assert terminal.payload["terminal_status"] == "compensation_failed"
    assert "credit_source_channel left for a person" in terminal.delta_summary


@pytest.fixture
def audit_then_credit(agent: ServiceAccount) -> Iterator[Workflow]:
    """A workflow whose first step declares that it cannot be rolled back."""
    workflow = register(
        Workflow(
            id="test_audit_then_credit",
            version=1,
            decision_type="test_audit_then_credit",
            scope=lambda d: {"meta": {"market": "all"}, "google": {"market": "all"}},
            validate_action=lambda action: {},
            steps=(
                Step(
                    id="record_audit_adjustment",
                    build=lambda d: budget_change("meta", {"market": "all"}, -1_000_000),
                    no_rollback_reason="bookkeeping adjustment, settled by finance",
                ),
                Step(
                    id="credit_google",
                    build=lambda d: budget_change("google", {"market": "all"}, 1_000_000),
                    compensation=Compensation(id="debit_google", build=invert_budget_change),
                ),
            ),
        )
    )
    allow_everything(agent.workspace)
    yield workflow
    unregister(workflow.id, workflow.version)


def test_step_without_compensation_is_skipped_and_the_run_needs_a_person(
    agent: ServiceAccount, audit_then_credit: Workflow
) -> None:
    fault(agent, "google", SandboxFault.Kind.FATAL)
    document = rebalance()
    document["type"] = document["action"]["type"] = "test_audit_then_credit"
    decision = submit(agent, document)
    drain()

    run = WorkflowRun.objects.get(decision=decision)
    assert run.status == RunStatus.COMPENSATION_FAILED
    skipped = StepExecution.objects.get(run=run, kind="compensation")
    assert skipped.status == "skipped"
    assert skipped.skip_reason == "bookkeeping adjustment, settled by finance"
    event = RuntimeEvent.objects.get(run=run, kind=RuntimeEvent.Kind.COMPENSATION_SKIPPED)
    assert event.payload["step_id"] == "record_audit_adjustment"


def test_overlapping_runs_take_turns_so_each_hash_proves_its_own_effect(
    agent: ServiceAccount,
) -> None:
    failing = rebalance()
    fault(
        agent,
        "google",
        SandboxFault.Kind.RATE_LIMIT,
        key_prefix=step_calls_prefix(first_run_key(failing), "credit_target_channel"),
    )
    first = submit(agent, failing)
    second = submit(agent, rebalance(source="google", target="meta", amount=250))
    drain()

    compensated = WorkflowRun.objects.get(decision=first)
    completed = WorkflowRun.objects.get(decision=second)
    assert (compensated.status, completed.status) == ("compensated", "completed")
    assert compensated.before_state_hash == compensated.after_state_hash
    assert completed.before_state_hash == compensated.after_state_hash
    assert completed.created_at > compensated.created_at
