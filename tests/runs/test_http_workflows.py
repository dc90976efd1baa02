"""A team's own workflows (YAML and plug-in) on three HTTP platforms, run by real runner
processes against real reference platform servers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from controlplane.models import ServiceAccount
from controlplane.policy.versions import activate_policy
from mutations.models import Mutation
from runs.keys import compensation_key, step_calls_prefix, step_key
from runs.models import WorkflowRun
from tests.conftest import first_run_key, submit
from tests.platforms import DEMO_WORKFLOWS, EXAMPLES, PLUGIN, Platforms
from tests.processes import ROOT, Runners, stderr_of

ACCESS_POLICY = """version: access_policy_test
default: require_human
rules:
  - id: allow-access-grants
    when: { topic: access.grant, compensation_declared: true }
    decision: allow
"""
START: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "iam": ({"group": "payments-oncall"}, {"members": ["lee.chen"]}),
    "billing": ({"account": "cc-payments"}, {"seats_available": 0}),
}


@dataclass(frozen=True)
class Definition:
    decision_type: str
    steps: tuple[str, str, str]
    undo: tuple[str, str]  # compensation ids of steps 2 and 1, in the order they must run
    ticket_prefix: str


YAML = Definition(
    "grant_access",
    ("add_to_iam_group", "open_access_ticket", "reserve_billing_seat"),
    ("delete_access_ticket", "remove_from_iam_group"),
    "ACCESS",
)
PLUGGED_IN = Definition(
    "onboard_contractor",
    ("add_to_group", "open_onboarding_ticket", "reserve_seat"),
    ("delete_onboarding_ticket", "remove_from_group"),
    "ONBOARD",
)


def access_decision(decision_type: str, number: int) -> dict[str, Any]:
    return {
        "id": f"dec_01J1B9HTTPTEST{number:012d}",
        "type": decision_type,
        "priority": "medium",
        "confidence": 0.9,
        "summary": "Give ana.ruiz access to payments-oncall",
        "reasoning": "She joins the on-call rotation.",
        "auto_executable": True,
        "action": {
            "type": decision_type,
            "user": "ana.ruiz",
            "group": "payments-oncall",
            "cost_center": "cc-payments",
        },
        "computed_at": "2026-04-23T08:15:00Z",
        "policy_version": "access_policy_test",
    }


def seed(platforms: Platforms) -> None:
    for name, (target, state) in START.items():
        platforms.seed(name, target, state)


def start_runner(runners: Runners, platforms: Platforms, *args: str, **env: str) -> Any:
    # Real retry delays: the 429's Retry-After must really hold the next attempt back.
    return runners.start(*args, BACKSTOP_RETRY_DELAY_SCALE="1", **{**platforms.env, **env})


@pytest.mark.parametrize("definition", [YAML, PLUGGED_IN], ids=["yaml", "plugin"])
def test_third_step_fails_and_first_two_are_undone_in_reverse(
    transactional_db: None,
    agent: ServiceAccount,
    runners: Runners,
    platforms: Platforms,
    definition: Definition,
) -> None:
    activate_policy(workspace=agent.workspace, text=ACCESS_POLICY, activated_by="test")
    seed(platforms)
    document = access_decision(definition.decision_type, 1)
    key = first_run_key(document)
    first, second, third = definition.steps
    platforms.fault(
        "iam", kind="rate_limit", key_prefix=step_calls_prefix(key, first), retry_after=2, count=1
    )
    platforms.fault(
        "ticketing", kind="ambiguous", key_prefix=step_calls_prefix(key, second), count=1
    )
    before = {name: platforms.state(name) for name in ("iam", "ticketing", "billing")}

    decision = submit(agent, document)
    runner = start_runner(runners, platforms, "--until-idle")
    assert runner.wait(timeout=90) == 0, stderr_of(runner)

    run = WorkflowRun.objects.get(decision=decision)
    assert run.status == "compensated"
    assert run.before_state_hash == run.after_state_hash
    assert {n: platforms.state(n) for n in before} == before

    rows = list(Mutation.objects.filter(run=run).order_by("sequence"))
    assert [(m.step_id, m.status) for m in rows] == [
        (first, "success"),
        (second, "success"),
        (third, "failed"),
        (definition.undo[0], "rolled_back"),
        (definition.undo[1], "rolled_back"),
    ]
    assert rows[3].compensates_id == rows[1].mutation_id
    assert rows[4].compensates_id == rows[0].mutation_id
    assert rows[3].payload["compensates_mutation_id"] == rows[1].mutation_id
    assert "would_go_negative (HTTP 422)" in (rows[2].error_message or "")

    iam = [r for r in platforms.requests("iam") if r["path"] == "/v1/mutations"]
    assert [r["idempotency_key"] for r in iam] == [step_key(key, first)] * 2 + [
        compensation_key(key, first)
    ]
    assert [r["status"] for r in iam] == [429, 200, 200]
    assert all(r["authorized"] for r in platforms.requests("iam"))
    assert iam[1]["at"] - iam[0]["at"] >= 2.0  # Retry-After: 2 held the retry back

    ticketing = [r for r in platforms.requests("ticketing") if r["path"] == "/v1/mutations"]
    assert [r["idempotency_key"] for r in ticketing] == [step_key(key, second)] * 2 + [
        compensation_key(key, second)
    ]
    assert [r["outcome"] for r in ticketing] == ["fault:ambiguous", "replayed", "applied"]
    created = [
        o
        for o in platforms.operations("ticketing")
        if o["idempotency_key"] == step_key(key, second)
    ]
    assert [(o["applied"], o["replays"]) for o in created] == [(True, 1)]

    billing = platforms.requests("billing")
    assert billing and all(r["signature_valid"] for r in billing)
    assert [r["status"] for r in billing if r["path"] == "/v1/mutations"] == [422]

    # The timeline's receipts are the platforms' own request ids.
    assert rows[0].receipt == {"http_status": 200, "request_id": iam[1]["request_id"]}
    assert rows[2].receipt["http_status"] == 422


def test_plugin_and_yaml_workflows_are_registered_with_their_source(platforms: Platforms) -> None:
    from runs.workflows import workflow_for

    yaml_workflow = workflow_for("grant_access")
    plugin_workflow = workflow_for("onboard_contractor")
    assert yaml_workflow is not None and yaml_workflow.source.endswith("grant_access.yaml")
    assert plugin_workflow is not None and plugin_workflow.source == "plug-in acme_backstop"
    assert [s.platform for s in yaml_workflow.steps] == ["iam", "ticketing", "billing"]


def test_readme_shows_the_plugin_and_yaml_examples_the_tests_load() -> None:
    readme = (ROOT / "README.md").read_text()
    assert (EXAMPLES / f"{PLUGIN}.py").read_text() in readme
    assert (DEMO_WORKFLOWS / "grant_access.yaml").read_text() in readme
