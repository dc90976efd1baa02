"""Backstop's workflows on a real Temporal dev server: the same sagas, the same Mutation Log
and the same timeline as with the built-in engine; held runs wait for their approval, and a
run is never started twice."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowExecutionStatus
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from controlplane.models import Role, ServiceAccount
from controlplane.policy.versions import activate_policy
from mutations.models import Mutation, RuntimeEvent, SandboxFault, SandboxOperation
from runs.engines.temporal import dispatch
from runs.engines.temporal.worker import TemporalWorker, connect
from runs.engines.temporal.workflow import WORKFLOW_NAME, Plan
from runs.keys import step_calls_prefix
from runs.models import RunStatus, StepExecution, WorkflowRun
from tests.aio import run_async
from tests.conftest import budget, drain, first_run_key, plan_stuck_compensation, rebalance, submit
from tests.controlplane.test_approvals import api
from tests.platforms import Platforms
from tests.runs.test_http_workflows import (
    ACCESS_POLICY,
    PLUGGED_IN,
    YAML,
    Definition,
    access_decision,
    seed,
)
from tests.runs.test_runner import audit_then_credit, fault  # noqa: F401 - a fixture
from tests.temporal import DRAIN_SECONDS, drain_on_temporal

pytestmark = pytest.mark.django_db(transaction=True)


def rows(run: WorkflowRun) -> list[Mutation]:
    return list(Mutation.objects.filter(run=run).order_by("sequence"))


def event_kinds(run: WorkflowRun) -> list[str]:
    return list(
        RuntimeEvent.objects.filter(run=run)
        .order_by("timestamp", "event_id")
        .values_list("kind", flat=True)
    )


# ---- sagas ---------------------------------------------------------------------------------


@pytest.mark.parametrize("definition", [PLUGGED_IN, YAML], ids=["plugin", "yaml"])
def test_third_step_failing_undoes_the_second_then_the_first(
    agent: ServiceAccount, platforms: Platforms, temporal: Any, definition: Definition
) -> None:
    activate_policy(workspace=agent.workspace, text=ACCESS_POLICY, activated_by="test")
    seed(platforms)  # billing has no seat left: the third step fails for good (HTTP 422)
    document = access_decision(definition.decision_type, 1)
    first, second, third = definition.steps
    # A retried step and a lost answer on the way, as Temporal retries them.
    key = first_run_key(document)
    platforms.fault("iam", kind="rate_limit", key_prefix=step_calls_prefix(key, first), count=1)
    platforms.fault(
        "ticketing", kind="ambiguous", key_prefix=step_calls_prefix(key, second), count=1
    )
    before = {name: platforms.state(name) for name in ("iam", "ticketing", "billing")}

    decision = submit(agent, document)
    assert drain_on_temporal() == 1

    run = WorkflowRun.objects.get(decision=decision)
    assert (run.engine, run.status, run.failed_step_id) == ("temporal", "compensated", third)
    assert run.before_state_hash == run.after_state_hash
    assert {name: platforms.state(name) for name in before} == before
    log = rows(run)
    assert [(m.step_id, m.status, m.actor_type) for m in log] == [
        (first, "success", "agent:decision-runtime-cron"),
        (second, "success", "agent:decision-runtime-cron"),
        (third, "failed", "agent:decision-runtime-cron"),
        (definition.undo[0], "rolled_back", "compensation"),
        (definition.undo[1], "rolled_back", "compensation"),
    ]
    assert (log[3].compensates_id, log[4].compensates_id) == (
        log[1].mutation_id,
        log[0].mutation_id,
    )
    assert log[3].payload["compensates_mutation_id"] == log[1].mutation_id
    undone = StepExecution.objects.filter(run=run, kind="compensation").order_by("finished_at")
    assert [(u.step_id, u.name, u.status, u.attempts, u.compensates_id) for u in undone] == [
        (second, definition.undo[0], "succeeded", 1, log[1].mutation_id),
        (first, definition.undo[1], "succeeded", 1, log[0].mutation_id),
    ]
    forward = StepExecution.objects.filter(run=run, kind="forward").order_by("position")
    assert [(f.step_id, f.status, f.attempts) for f in forward] == [
        (first, "succeeded", 2),
        (second, "succeeded", 2),
        (third, "failed", 1),  # a 422 is not retried
    ]
    created = [
        o
        for o in platforms.operations("ticketing")
        if o["idempotency_key"] == log[1].idempotency_key
    ]
    assert [(o["applied"], o["replays"]) for o in created] == [(True, 1)]  # applied once
    assert event_kinds(run)[-5:] == [
        "step_failed",
        "rollback_started",
        "compensation_applied",
        "compensation_applied",
        "run_finished",
    ]


def test_compensation_that_keeps_failing_is_retried_then_left_for_a_person(
    agent: ServiceAccount, temporal: Any
) -> None:
    meta = budget(agent.org, "meta")
    document = rebalance()
    plan_stuck_compensation(agent, document)
    decision = submit(agent, document)
    drain_on_temporal()

    run = WorkflowRun.objects.get(decision=decision)
    assert (run.engine, run.status) == ("temporal", RunStatus.COMPENSATION_FAILED)
    assert [(m.platform, m.status) for m in rows(run)] == [
        ("meta", "success"),
        ("google", "failed"),
        ("meta", "failed"),
    ]
    undo = StepExecution.objects.get(run=run, kind="compensation")
    assert (undo.status, undo.attempts) == ("failed", 5)  # the compensation's own policy
    assert budget(agent.org, "meta") == meta - 800_000_000  # a person must finish the job
    assert run.before_state_hash != run.after_state_hash
    finished = RuntimeEvent.objects.get(run=run, kind=RuntimeEvent.Kind.RUN_FINISHED)
    assert "credit_source_channel left for a person" in finished.delta_summary


@pytest.mark.usefixtures("audit_then_credit")
def test_step_without_compensation_is_skipped_and_the_run_needs_a_person(
    agent: ServiceAccount, temporal: Any
) -> None:
    meta = budget(agent.org, "meta")
    fault(agent, "google", SandboxFault.Kind.FATAL)
    document = rebalance()
    document["type"] = document["action"]["type"] = "test_audit_then_credit"
    decision = submit(agent, document)
    drain_on_temporal()

    run = WorkflowRun.objects.get(decision=decision)
    assert (run.engine, run.status) == ("temporal", RunStatus.COMPENSATION_FAILED)
    assert run.current_step_id == "compensation_incomplete"
    skipped = StepExecution.objects.get(run=run, kind="compensation")
    assert (skipped.step_id, skipped.status) == ("record_audit_adjustment", "skipped")
    assert skipped.skip_reason == "bookkeeping adjustment, settled by finance"
    assert [(m.step_id, m.status) for m in rows(run)] == [
        ("record_audit_adjustment", "success"),
        ("credit_google", "failed"),
    ]
    assert budget(agent.org, "meta") == meta - 1_000_000  # left for a person
    assert run.before_state_hash != run.after_state_hash
    event = RuntimeEvent.objects.get(run=run, kind=RuntimeEvent.Kind.COMPENSATION_SKIPPED)
    assert event.payload["step_id"] == "record_audit_adjustment"
    finished = RuntimeEvent.objects.get(run=run, kind=RuntimeEvent.Kind.RUN_FINISHED)
    assert finished.payload["terminal_status"] == "compensation_failed"
    assert "record_audit_adjustment left for a person" in finished.delta_summary


def test_first_step_failing_for_good_fails_with_nothing_to_undo(
    agent: ServiceAccount, temporal: Any
) -> None:
    meta = budget(agent.org, "meta")
    fault(agent, "meta", SandboxFault.Kind.FATAL)
    decision = submit(agent, rebalance())
    drain_on_temporal()

    run = WorkflowRun.objects.get(decision=decision)
    assert (run.engine, run.status) == ("temporal", RunStatus.FAILED)
    assert run.failed_step_id == "debit_source_channel"
    assert [(m.step_id, m.status) for m in rows(run)] == [("debit_source_channel", "failed")]
    [step] = StepExecution.objects.filter(run=run)
    assert (step.kind, step.status, step.attempts) == ("forward", "failed", 1)
    assert budget(agent.org, "meta") == meta
    assert run.before_state_hash == run.after_state_hash
    assert event_kinds(run) == ["run_started", "step_failed", "run_finished"]
    finished = RuntimeEvent.objects.get(run=run, kind=RuntimeEvent.Kind.RUN_FINISHED)
    assert finished.payload["terminal_status"] == "failed"


def test_first_step_failing_on_an_http_platform_fails_after_reading_its_state(
    agent: ServiceAccount, platforms: Platforms, temporal: Any
) -> None:
    activate_policy(workspace=agent.workspace, text=ACCESS_POLICY, activated_by="test")
    seed(platforms)
    document = access_decision(PLUGGED_IN.decision_type, 3)
    first = PLUGGED_IN.steps[0]
    platforms.fault(
        "iam", kind="fatal", key_prefix=step_calls_prefix(first_run_key(document), first)
    )
    before = platforms.state("iam")

    decision = submit(agent, document)
    assert drain_on_temporal() == 1

    run = WorkflowRun.objects.get(decision=decision)
    assert (run.engine, run.status, run.failed_step_id) == ("temporal", "failed", first)
    assert [(m.step_id, m.status) for m in rows(run)] == [(first, "failed")]
    assert platforms.state("iam") == before
    assert run.before_state_hash == run.after_state_hash is not None
    # The platforms' state is read by calls: before the first step and after the end.
    reads = [r["path"] for r in platforms.requests("billing")]
    assert reads == ["/v1/snapshot", "/v1/snapshot"]
    assert event_kinds(run) == ["run_started", "step_failed", "run_finished"]


def test_retry_after_holds_a_retry_back_on_temporal(
    agent: ServiceAccount, platforms: Platforms, temporal: Any, settings: Any
) -> None:
    settings.BACKSTOP_RETRY_DELAY_SCALE = 1  # real delays: Temporal waits them out
    activate_policy(workspace=agent.workspace, text=ACCESS_POLICY, activated_by="test")
    platforms.seed("iam", {"group": "payments-oncall"}, {"members": []})
    platforms.seed("billing", {"account": "cc-payments"}, {"seats_available": 1})
    document = access_decision(PLUGGED_IN.decision_type, 4)
    first = PLUGGED_IN.steps[0]
    key = first_run_key(document)
    platforms.fault(
        "iam", kind="rate_limit", key_prefix=step_calls_prefix(key, first), retry_after=2, count=1
    )

    decision = submit(agent, document)
    assert drain_on_temporal() == 1

    run = WorkflowRun.objects.get(decision=decision)
    assert run.status == "completed"
    iam = [r for r in platforms.requests("iam") if r["path"] == "/v1/mutations"]
    assert [r["status"] for r in iam] == [429, 200]
    assert iam[1]["at"] - iam[0]["at"] >= 2.0
    retried = RuntimeEvent.objects.get(run=run, kind=RuntimeEvent.Kind.STEP_RETRY_SCHEDULED)
    assert retried.payload["error_kind"] == "rate_limit"


def test_yaml_workflow_completes_on_temporal(
    agent: ServiceAccount, platforms: Platforms, temporal: Any
) -> None:
    activate_policy(workspace=agent.workspace, text=ACCESS_POLICY, activated_by="test")
    platforms.seed("iam", {"group": "payments-oncall"}, {"members": ["lee.chen"]})
    platforms.seed("billing", {"account": "cc-payments"}, {"seats_available": 3})
    document = access_decision(YAML.decision_type, 2)

    decision = submit(agent, document)
    assert drain_on_temporal() == 1

    run = WorkflowRun.objects.get(decision=decision)
    assert (run.engine, run.workflow_id, run.status) == ("temporal", "grant_access", "completed")
    assert [(m.step_id, m.status) for m in rows(run)] == [(s, "success") for s in YAML.steps]
    assert run.before_state_hash != run.after_state_hash
    states = {name: platforms.state(name) for name in ("iam", "ticketing", "billing")}
    assert {
        "target": {"group": "payments-oncall"},
        "state": {"members": ["lee.chen", "ana.ruiz"]},
    } in states["iam"]
    assert {"target": {"account": "cc-payments"}, "state": {"seats_available": 2}} in states[
        "billing"
    ]
    [ticket] = states["ticketing"]
    assert ticket["target"] == {"ticket": f"ACCESS-{document['id']}"}


# ---- handing runs to Temporal --------------------------------------------------------------


def close_on_temporal(run_id: str) -> Any:
    """Keep a Temporal worker running until the run's workflow closes; return its result.

    ``drain_on_temporal`` stops once no run is left to run in the database, which may be
    before Temporal heard the workflow's last word: its workflow is then still open."""
    worker = TemporalWorker()
    thread = threading.Thread(target=worker.run, name="temporal-closer")
    thread.start()

    async def result() -> Any:
        client = await connect()
        return await asyncio.wait_for(client.get_workflow_handle(run_id).result(), DRAIN_SECONDS)

    try:
        return run_async(result())
    finally:
        worker.stop()
        thread.join(30)


def _started(run_id: str) -> bool:
    async def describe() -> bool:
        client = await connect()
        try:
            await client.get_workflow_handle(run_id).describe()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return True

    return run_async(describe())


def test_held_run_starts_on_temporal_only_once_approved(
    agent: ServiceAccount, temporal: Any, client: Client, member: Any
) -> None:
    decision = submit(agent, rebalance(amount=6000))  # the budget policy holds it
    run = WorkflowRun.objects.get(decision=decision)
    assert (run.engine, run.status) == ("temporal", RunStatus.AWAITING_APPROVAL)

    assert drain_on_temporal() == 0  # nothing to hand over, nothing left to run
    run.refresh_from_db()
    assert (run.status, run.dispatched_at) == (RunStatus.AWAITING_APPROVAL, None)
    assert not _started(run.run_id)
    assert not Mutation.objects.filter(run=run).exists()

    client.force_login(member("ann", Role.APPROVER))
    assert api(client, run, "approve", "agreed with finance").status_code == 200
    run.refresh_from_db()
    assert (run.status, run.dispatched_at) == (RunStatus.PENDING, None)

    assert drain_on_temporal() == 1
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    assert run.dispatched_at is not None and run.dispatched_at > run.created_at
    assert _started(run.run_id)
    assert [(m.step_id, m.status) for m in rows(run)] == [
        ("debit_source_channel", "success"),
        ("credit_target_channel", "success"),
    ]
    kinds = event_kinds(run)
    assert kinds.index("approval_decided") < kinds.index("run_started")


async def start_as_another_worker(client: TemporalClient, plan: Plan) -> Any:
    """Start the run's workflow as a dispatcher does for a first start."""
    return await client.start_workflow(
        WORKFLOW_NAME,
        plan,
        id=plan.run_id,
        task_queue=django_settings.TEMPORAL_TASK_QUEUE,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
    )


def test_a_second_start_of_a_run_is_refused_by_temporal(
    agent: ServiceAccount, temporal: Any
) -> None:
    decision = submit(agent, rebalance())
    run = WorkflowRun.objects.get(decision=decision)
    [(plan, first)] = dispatch.due_plans()
    assert (plan.run_id, first) == (run.run_id, True)

    async def start_thrice() -> tuple[str | None, list[str]]:
        client = await connect()
        # One worker starts the run; two more hand it over at the same time.
        handle = await start_as_another_worker(client, plan)
        handed = await dispatch.dispatch(client, [(plan, True), (plan, True)])
        return handle.first_execution_run_id, handed

    execution, handed = run_async(start_thrice())
    assert handed == [run.run_id, run.run_id]  # refused, and counted as handed over
    dispatch.mark_dispatched(handed)
    assert drain_on_temporal() == 0
    assert close_on_temporal(run.run_id) == RunStatus.COMPLETED
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED

    async def start_again() -> tuple[list[str], WorkflowExecutionStatus | None]:
        client = await connect()
        with pytest.raises(WorkflowAlreadyStartedError):
            await start_as_another_worker(client, plan)
        await dispatch.start(client, plan, first=True)  # refused too, quietly
        executions = [w.run_id async for w in client.list_workflows(f"WorkflowId = '{run.run_id}'")]
        described = await client.get_workflow_handle(run.run_id).describe()
        return executions, described.status

    executions, status = run_async(start_again())
    assert executions == [execution]
    assert status == WorkflowExecutionStatus.COMPLETED
    log = rows(run)
    assert [(m.step_id, m.status) for m in log] == [
        ("debit_source_channel", "success"),
        ("credit_target_channel", "success"),
    ]
    assert SandboxOperation.objects.filter(org=agent.org).count() == 2  # each applied once


def test_a_later_start_is_handed_over_only_once_the_last_workflow_closed(
    agent: ServiceAccount, temporal: Any
) -> None:
    """A rollback retried while the run's last workflow is still open (done with the run,
    its last word not yet taken in) must wait for it: that workflow will not look again."""
    decision = submit(agent, rebalance())
    run = WorkflowRun.objects.get(decision=decision)
    [(plan, _)] = dispatch.due_plans()

    async def start_while_open() -> tuple[list[str], str | None]:
        client = await connect()
        handle = await start_as_another_worker(client, plan)
        return await dispatch.dispatch(client, [(plan, False)]), handle.first_execution_run_id

    handed, last = run_async(start_while_open())
    assert handed == []  # not handed over: the next dispatch tries again
    dispatch.mark_dispatched([run.run_id])  # the open workflow is the run's
    drain_on_temporal()
    assert close_on_temporal(run.run_id) == RunStatus.COMPLETED

    async def start_once_closed() -> tuple[list[str], str | None]:
        client = await connect()
        handed = await dispatch.dispatch(client, [(plan, False)])
        return handed, (await client.get_workflow_handle(run.run_id).describe()).run_id

    handed, execution = run_async(start_once_closed())
    assert handed == [run.run_id] and execution != last  # a workflow of its own
    assert close_on_temporal(run.run_id) == RunStatus.COMPLETED  # it found the run over
    assert [(m.step_id, m.status) for m in rows(run)] == [
        ("debit_source_channel", "success"),
        ("credit_target_channel", "success"),
    ]


# ---- the timeline ---------------------------------------------------------------------------


def seed_like(agent: ServiceAccount) -> dict[str, Any]:
    """Return a rebalance whose credit keeps answering 429, as in the seed's scenario."""
    document = rebalance()
    fault(
        agent,
        "google",
        SandboxFault.Kind.RATE_LIMIT,
        key_prefix=step_calls_prefix(first_run_key(document), "credit_target_channel"),
        retry_after_seconds=120,
    )
    return document


def timeline(client: Client, decision_id: str) -> dict[str, Any]:
    """Return what the decision's timeline shows, without its ids and times."""
    events = client.get(f"/api/v1/events/?decision_id={decision_id}").json()
    mutations = client.get(f"/api/v1/mutations/?decision_id={decision_id}").json()
    return {
        "events": [
            (
                e["kind"],
                e["surface"],
                e["payload"].get("step_id"),
                e["payload"].get("attempt"),
                e["payload"].get("error_kind"),
                e["payload"].get("terminal_status"),
                e["before_state_hash"],
                e["after_state_hash"],
                e["delta_summary"],
                sorted(e["payload"]),
            )
            for e in events["entries"]
        ],
        "mutations": [
            (m["platform"], m["mutation_type"], m["status"], m["actor_type"], sorted(m))
            for m in mutations["entries"]
        ],
        "counts": (events["count"], mutations["count"]),
    }


def test_timeline_is_the_same_on_both_engines(
    agent: ServiceAccount, temporal: Any, settings: Any, client: Client, member: Any
) -> None:
    settings.BACKSTOP_ENGINE = "builtin"
    on_builtin = submit(agent, seed_like(agent))
    drain()
    settings.BACKSTOP_ENGINE = "temporal"
    on_temporal = submit(agent, seed_like(agent))
    drain_on_temporal()

    runs = [WorkflowRun.objects.get(decision=d) for d in (on_builtin, on_temporal)]
    assert [(r.engine, r.status) for r in runs] == [
        ("builtin", "compensated"),
        ("temporal", "compensated"),
    ]
    client.force_login(member("viewer", Role.VIEWER))
    builtin, temporal_ = (timeline(client, d.id) for d in (on_builtin, on_temporal))
    assert temporal_ == builtin
    assert [e[0] for e in builtin["events"]] == [
        "decision_received",
        "policy_evaluated",
        "run_started",
        "step_succeeded",
        "step_retry_scheduled",
        "step_retry_scheduled",
        "step_failed",
        "rollback_started",
        "compensation_applied",
        "run_finished",
    ]


def test_overlapping_runs_take_turns_so_each_hash_proves_its_own_effect(
    agent: ServiceAccount, temporal: Any
) -> None:
    failing = submit(agent, seed_like(agent))
    other = submit(agent, rebalance(source="google", target="meta", amount=250))
    in_flight = 2 if connection.features.has_select_for_update_skip_locked else 1
    assert drain_on_temporal(in_flight=in_flight) == 2

    compensated = WorkflowRun.objects.get(decision=failing)
    completed = WorkflowRun.objects.get(decision=other)
    assert (compensated.status, completed.status) == ("compensated", "completed")
    assert compensated.before_state_hash == compensated.after_state_hash
    # Temporal may start either first; the other waits for the scope they share.
    earlier, later = sorted((compensated, completed), key=lambda r: r.finished_at or r.created_at)
    assert later.before_state_hash == earlier.after_state_hash
    started = RuntimeEvent.objects.get(run=later, kind=RuntimeEvent.Kind.RUN_STARTED)
    ended = RuntimeEvent.objects.get(run=earlier, kind=RuntimeEvent.Kind.RUN_FINISHED)
    assert started.timestamp >= ended.timestamp
