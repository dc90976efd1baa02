"""BACKSTOP_LOG_FORMAT=json: a real runner's log lines are JSON objects carrying the run,
trace and decision ids as fields."""

from __future__ import annotations

import json

import pytest

from controlplane.models import ServiceAccount
from runs.models import RunStatus, WorkflowRun
from tests.conftest import submit
from tests.controlplane.test_mcp import seed_scenario
from tests.processes import Runners, stderr_of

pytestmark = pytest.mark.django_db(transaction=True)


def test_runner_logs_one_json_object_per_line_with_run_and_trace(
    agent: ServiceAccount, runners: Runners
) -> None:
    decision = submit(agent, seed_scenario(agent))
    runner = runners.start("--until-idle", BACKSTOP_LOG_FORMAT="json", RUNNER_LOG_LEVEL="INFO")
    assert runner.wait(timeout=120) == 0
    run = WorkflowRun.objects.get(decision=decision)
    assert run.status == RunStatus.COMPENSATED

    lines = [line for line in stderr_of(runner).splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line, or this raises
    assert entries
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys()
    about_run = [entry for entry in entries if entry.get("run_id") == run.run_id]
    assert about_run, entries
    for entry in about_run:
        assert entry["trace_id"] == decision.trace_id
        assert entry["level"] == "INFO"
    # The outcomes pass the ids as fields; the claim's line has them in its text only.
    outcomes = [entry for entry in about_run if entry["logger"] == "runs.engine"]
    assert outcomes and all(entry["decision_id"] == decision.id for entry in outcomes)
    assert any(entry["logger"] == "runs.claims" for entry in about_run)
    messages = [entry["message"] for entry in outcomes]
    assert any("step=credit_target_channel" in m and "outcome=failed" in m for m in messages)
    assert messages[-1].endswith("finished status=compensated")
