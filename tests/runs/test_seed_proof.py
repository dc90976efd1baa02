"""The proof of seed 000, end to end: demo, runner, API."""

from typing import Any

import pytest
from django.test import Client

from controlplane.devtools.demo import SEED_DECISION_ID
from controlplane.models import Organization, ServiceAccount
from mutations.hashing import snapshot_scope, state_hash
from mutations.models import Mutation, RuntimeEvent, SandboxFault, SandboxOperation
from runs.keys import compensation_key, step_calls_prefix, step_key
from runs.models import WorkflowRun
from tests.conftest import budget, command, drain, first_run_key, load_fixture, submit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def seed_run(client: Client) -> dict[str, Any]:
    """Load the demo, take the sandbox state, and drain the runner like a user would."""
    command("demo")
    org = Organization.objects.get(slug="demo")
    before = {p: budget(org, p) for p in ("meta", "google")}
    command("runworkflows", until_idle=True)
    client.login(username="operator", password="backstop-demo")
    return {"org": org, "before": before, "client": client}


def test_mutation_log_reproduces_the_seed(seed_run: dict[str, Any]) -> None:
    body = seed_run["client"].get(f"/api/v1/mutations/?decision_id={SEED_DECISION_ID}").json()
    seed = load_fixture("seed_mutation_log.json")

    assert body["query"] == {"decision_id": SEED_DECISION_ID}
    assert body["count"] == 3 == len(body["entries"])
    assert set(body) == set(seed)
    for entry, expected in zip(body["entries"], seed["entries"], strict=True):
        assert list(entry) == list(expected)
        for field in ("decision_id", "platform", "mutation_type", "status", "actor_type"):
            assert entry[field] == expected[field], field
    debit, credit, undo = body["entries"]
    assert debit["payload"] == {"daily_budget_delta_micros": -800000000}
    assert debit["actor_type"] == "agent:decision-runtime-cron"
    assert debit["error_message"] is None and "applied_at" in debit["result"]
    assert credit["result"] is None
    assert credit["payload"] == {"daily_budget_delta_micros": 800000000}
    assert "rate_limit_exceeded" in credit["error_message"]
    assert "429" in credit["error_message"]
    assert undo["payload"] == {
        "daily_budget_delta_micros": 800000000,
        "compensates_mutation_id": debit["mutation_id"],
        "compensation_reason": "downstream_step_failure",
    }
    assert undo["actor_type"] == "compensation" and undo["status"] == "rolled_back"
    assert all(
        e["mutation_id"].startswith("mut_") and len(e["mutation_id"]) == 30 for e in body["entries"]
    )


def test_run_ends_compensated_in_the_seed_shape(seed_run: dict[str, Any]) -> None:
    run = WorkflowRun.objects.get(decision_id=SEED_DECISION_ID)
    body = seed_run["client"].get(f"/api/v1/runs/{run.run_id}/").json()
    seed = load_fixture("seed_workflow_run.json")

    assert list(body)[: len(seed)] == list(seed)
    assert body["workflow_id"] == "execute_rebalance_spend"
    assert body["status"] == "compensated"
    assert body["current_step_id"] == "compensation_complete"
    assert body["idempotency_key"] == seed["idempotency_key"]
    assert body["requested_by"] == "agent:decision-runtime-cron"
    assert body["org_id"] == seed_run["org"].id
    assert body["retry_count"] == 0 and body["awaiting_approval"] is False


def test_terminal_event_proves_net_zero(seed_run: dict[str, Any]) -> None:
    body = seed_run["client"].get(f"/api/v1/events/?decision_id={SEED_DECISION_ID}").json()
    seed = load_fixture("seed_runtime_event.json")
    terminal = body["entries"][-1]
    debit_id = Mutation.objects.filter(decision_id=SEED_DECISION_ID).first().mutation_id  # type: ignore[union-attr]

    assert set(seed) <= set(terminal)
    assert terminal["surface"] == "decision_runtime"
    assert terminal["user_id"] is None
    assert terminal["before_state_hash"] == terminal["after_state_hash"]
    assert (
        terminal["before_state_hash"].startswith("h_") and len(terminal["before_state_hash"]) == 14
    )
    assert terminal["payload"]["terminal_status"] == "compensated"
    assert terminal["payload"]["failed_step_id"] == "credit_target_channel"
    assert terminal["payload"]["compensated_mutations"] == [debit_id]
    assert terminal["delta_summary"] == (
        "Workflow compensated after downstream step failure (google_ads rate_limit)"
    )
    kinds = [e["kind"] for e in body["entries"]]
    assert kinds.count(RuntimeEvent.Kind.STEP_RETRY_SCHEDULED) == 2  # three attempts in all
    assert kinds.index("rollback_started") < kinds.index("compensation_applied")


def test_sandbox_is_back_where_it_started(agent: ServiceAccount) -> None:
    seed = load_fixture("seed_decision.json")
    SandboxFault.objects.create(
        org=agent.org,
        platform="google",
        kind=SandboxFault.Kind.RATE_LIMIT,
        retry_after_seconds=120,
        key_prefix=step_calls_prefix(first_run_key(seed), "credit_target_channel"),
    )
    before = {p: budget(agent.org, p) for p in ("meta", "google")}
    submit(agent, seed)
    drain()

    assert {p: budget(agent.org, p) for p in ("meta", "google")} == before
    run = WorkflowRun.objects.get(decision_id=seed["id"])
    applied = SandboxOperation.objects.filter(org=agent.org).values_list(
        "idempotency_key", flat=True
    )
    assert sorted(applied) == [
        step_key(run.idempotency_key, "debit_source_channel"),
        compensation_key(run.idempotency_key, "debit_source_channel"),
    ]
    keys = Mutation.objects.filter(status__in=["success", "rolled_back"]).values_list(
        "idempotency_key", flat=True
    )
    assert sorted(keys) == sorted(applied)


def test_hash_matches_the_sandbox_state_it_names(seed_run: dict[str, Any]) -> None:
    run = WorkflowRun.objects.get(decision_id="dec_01J1B8A2M4Q6S8U0W2Y4A6C8E0")
    assert run.status == "completed"
    assert run.after_state_hash == state_hash(snapshot_scope(org_id=run.org_id, scope=run.scope))
    assert run.before_state_hash != run.after_state_hash


def test_demo_is_idempotent(seed_run: dict[str, Any]) -> None:
    counts = (WorkflowRun.objects.count(), Mutation.objects.count(), RuntimeEvent.objects.count())
    command("demo")
    command("runworkflows", until_idle=True)
    assert (
        WorkflowRun.objects.count(),
        Mutation.objects.count(),
        RuntimeEvent.objects.count(),
    ) == counts
