"""The crash matrix on the HTTP connector: a runner SIGKILLed between an HTTP call and the
record of its outcome, then replaced, leaves every effect applied once on the platform."""

import signal

import pytest

from controlplane.models import ServiceAccount
from controlplane.policy.versions import activate_policy
from mutations.models import Mutation
from runs.models import WorkflowRun
from tests.conftest import submit
from tests.platforms import Platforms
from tests.processes import Runners, stderr_of
from tests.runs.test_http_workflows import ACCESS_POLICY, YAML, access_decision, seed

PLATFORMS = ("iam", "ticketing", "billing")


# The run makes five calls: three forward steps (the third refused), two compensations.
@pytest.mark.parametrize("call", [1, 2, 3, 4, 5])
def test_runner_killed_after_http_call_applies_each_effect_once(
    agent: ServiceAccount, runners: Runners, platforms: Platforms, call: int
) -> None:
    activate_policy(workspace=agent.workspace, text=ACCESS_POLICY, activated_by="test")
    seed(platforms)
    before = {name: platforms.state(name) for name in PLATFORMS}
    decision = submit(agent, access_decision(YAML.decision_type, call))

    crashed = runners.start(crash_at=f"after_platform_call:{call}", **platforms.env)
    assert crashed.wait(timeout=60) == -signal.SIGKILL, stderr_of(crashed)
    replacement = runners.start("--until-idle", **platforms.env)
    assert replacement.wait(timeout=60) == 0, stderr_of(replacement)

    run = WorkflowRun.objects.get(decision=decision)
    assert run.status == "compensated"
    assert run.before_state_hash == run.after_state_hash
    assert {name: platforms.state(name) for name in PLATFORMS} == before
    applied_rows = Mutation.objects.filter(run=run, status__in=["success", "rolled_back"])
    logged = sorted(applied_rows.values_list("idempotency_key", flat=True))
    operations = [op for name in PLATFORMS for op in platforms.operations(name) if op["applied"]]
    assert sorted(op["idempotency_key"] for op in operations) == logged  # each applied once
    assert len(logged) == 4
    # The call whose answer died with the runner was asked again and replayed, not re-applied.
    assert sum(op["replays"] for op in operations) == (0 if call == 3 else 1)
