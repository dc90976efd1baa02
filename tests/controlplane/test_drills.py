"""Compensation drills: started by operators, run by the runners, checked, reported."""

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management.base import CommandError
from django.test import Client

from controlplane.drills.schedule import start_due_drills
from controlplane.drills.start import DrillRefused, start_drill
from controlplane.drills.verify import verify_drill, verify_finished_drills
from controlplane.models import Drill, DrillPlan, Role, Workspace
from mutations.connectors import Applied, Change, register_connector, unregister_connector
from runs.models import WorkflowRun
from runs.periodic import Periodic
from runs.workflows import Compensation, Step, Workflow, register
from runs.workflows.builtin import budget_change, execute_rebalance_spend, pause_campaign
from runs.workflows.registry import unregister
from tests.conftest import command, drain

pytestmark = pytest.mark.django_db(transaction=True)


def checks(drill: Drill) -> dict[str, bool]:
    return {check["name"]: check["passed"] for check in drill.checks}


def test_rate_limited_credit_drill_passes(workspace: Workspace) -> None:
    drill = start_drill(
        workspace=workspace,
        workflow_id="execute_rebalance_spend",
        step_id="credit_target_channel",
        fault="rate_limit",
        started_by="user:ops",
    )
    assert drill.expected_status == "compensated"
    drain()
    drill = verify_drill(Drill.objects.get(pk=drill.pk))

    assert drill.passed is True, drill.checks
    assert all(checks(drill).values())
    run = WorkflowRun.objects.get(pk=drill.run_id)
    assert run.is_drill and run.status == "compensated"
    assert run.before_state_hash == run.after_state_hash


def test_recovering_and_ambiguous_faults_complete_with_each_key_once(workspace: Workspace) -> None:
    drills = [
        start_drill(
            workspace=workspace,
            workflow_id="execute_rebalance_spend",
            step_id="credit_target_channel",
            fault=fault,
            started_by="user:ops",
        )
        for fault in ("transient_burst", "ambiguous", "timeout")
    ]
    drain()
    burst, ambiguous, timeout = (verify_drill(Drill.objects.get(pk=d.pk)) for d in drills)
    assert (burst.expected_status, burst.passed) == ("completed", True)
    assert (ambiguous.expected_status, ambiguous.passed) == ("completed", True)
    assert "1 call replayed, answered with the first result" in next(
        c["evidence"] for c in ambiguous.checks if "idempotency" in c["name"]
    )
    assert (timeout.expected_status, timeout.passed) == ("compensated", True)


def test_drill_all_passes_for_every_built_in_workflow(workspace: Workspace) -> None:
    out = command("drill", "--all", "--drain", org="acme")
    assert out.count("PASS") == Drill.objects.count() >= 6
    assert "FAIL" not in out
    workflows = set(Drill.objects.values_list("workflow_id", flat=True))
    assert workflows == {
        "execute_rebalance_spend",
        "adjust_budget",
        "pause_campaign",
        "delete_campaign",
    }
    assert Drill.objects.filter(fault="compensation_fails", passed=True).exists()


def _half_undo(change: Change) -> Change:
    """A broken compensation: it gives back only half of what was taken."""
    delta = int(change.payload["daily_budget_delta_micros"])
    return budget_change(change.platform, change.target, -delta // 2)


@pytest.fixture
def broken_workflow() -> Iterator[Workflow]:
    workflow = register(
        Workflow(
            id="test_broken_undo",
            version=1,
            decision_type="test_broken_undo",
            scope=lambda d: {
                "meta": dict(d["action"]["scope"]),
                "google": dict(d["action"]["scope"]),
            },
            validate_action=lambda action: {},
            drill_action=execute_rebalance_spend.drill_action,
            drill_seed=execute_rebalance_spend.drill_seed,
            steps=(
                Step(
                    id="take",
                    build=lambda d: budget_change("meta", d["action"]["scope"], -10_000_000),
                    compensation=Compensation(id="give_back_half", build=_half_undo),
                ),
                Step(
                    id="give",
                    build=lambda d: budget_change("google", d["action"]["scope"], 10_000_000),
                    compensation=Compensation(id="take_back", build=_half_undo),
                ),
            ),
        )
    )
    yield workflow
    unregister(workflow.id, workflow.version)


def test_broken_compensation_fails_the_net_zero_check(
    workspace: Workspace, broken_workflow: Workflow, client: Client, member: Any
) -> None:
    drill = start_drill(
        workspace=workspace,
        workflow_id="test_broken_undo",
        step_id="give",
        fault="fatal",
        started_by="user:ops",
    )
    drain()
    drill = verify_drill(Drill.objects.get(pk=drill.pk))

    assert drill.passed is False
    assert checks(drill)["before hash equals after hash"] is False
    assert checks(drill)["terminal state"] is True  # it did end compensated: the undo is wrong
    client.force_login(member("ops", Role.OPERATOR))
    page = client.get("/drills/").content.decode()
    assert "The last drill of test_broken_undo failed" in page
    report = client.get(f"/drills/{drill.id}/").content.decode()
    assert "✗ before hash equals after hash" in report


def test_viewer_cannot_start_a_drill(workspace: Workspace, client: Client, member: Any) -> None:
    client.force_login(member("watcher", Role.VIEWER))
    target = {"target": "execute_rebalance_spend:credit_target_channel", "fault": "fatal"}
    assert client.post("/drills/start/", target).status_code == 403
    assert client.post("/drills/all/").status_code == 403
    body = {
        "workflow_id": "execute_rebalance_spend",
        "step_id": "credit_target_channel",
        "fault": "fatal",
    }
    assert client.post("/api/v1/drills/", body, content_type="application/json").status_code == 403
    assert not Drill.objects.exists()


class LiveConnector:
    """A platform that is not a sandbox: drills must refuse to go near it."""

    platform = "live_ads"
    api_name = "live_ads"
    sandbox = False
    in_database = False

    def apply(self, **kwargs: Any) -> Applied:
        raise AssertionError("a drill reached a live platform")

    def snapshot(self, **kwargs: Any) -> list[dict[str, Any]]:
        return []

    def snapshot_many(self, **kwargs: Any) -> list[list[dict[str, Any]]]:
        return []


def test_drill_naming_a_live_connector_is_refused(workspace: Workspace) -> None:
    register_connector(LiveConnector())
    live = dataclasses.replace(
        pause_campaign,
        id="pause_live",
        drill_action=lambda market: {"channel": "live_ads", "scope": {"market": market}},
    )
    register(live)
    try:
        with pytest.raises(DrillRefused, match="'live_ads' is a live connector"):
            start_drill(
                workspace=workspace,
                workflow_id="pause_live",
                step_id="pause_channel_campaign",
                fault="fatal",
                started_by="user:ops",
            )
    finally:
        unregister("pause_live", 1)
        unregister_connector("live_ads")
    assert not Drill.objects.exists()


def test_api_starts_a_drill_and_reports_it(
    workspace: Workspace, client: Client, member: Any
) -> None:
    client.force_login(member("ops", Role.OPERATOR))
    body = {
        "workflow_id": "execute_rebalance_spend",
        "step_id": "credit_target_channel",
        "fault": "rate_limit",
    }
    started = client.post("/api/v1/drills/", body, content_type="application/json")
    assert started.status_code == 201
    drain()
    verify_finished_drills()  # what the runners' housekeeping runs
    report = client.get(f"/api/v1/drills/{started.json()['id']}/").json()
    assert report["passed"] is True and report["run_status"] == "compensated"
    assert report["verifying"] is False
    bad = client.post(
        "/api/v1/drills/", {**body, "step_id": "nope"}, content_type="application/json"
    )
    assert bad.status_code == 400 and "no step 'nope'" in bad.json()["error"]["message"] + str(
        bad.json()
    )


def test_finished_drill_reads_as_verifying_until_the_runners_check_it(
    workspace: Workspace, client: Client, member: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Periodic, "run_due", lambda self: None)  # no housekeeping pass yet
    drill = start_drill(
        workspace=workspace,
        workflow_id="execute_rebalance_spend",
        step_id="credit_target_channel",
        fault="rate_limit",
        started_by="user:ops",
    )
    drain()
    client.force_login(member("ops", Role.OPERATOR))
    for _ in range(2):  # reading, however often, verifies nothing
        report = client.get(f"/api/v1/drills/{drill.id}/").json()
        assert (report["run_status"], report["passed"], report["verifying"]) == (
            "compensated",
            None,
            True,
        )
        assert client.get("/api/v1/drills/").json()["entries"][0]["verifying"] is True
        page = client.get(f"/drills/{drill.id}/").content.decode()
        assert 'data-testid="drill-result">verifying</a>' in page
        assert "the runners are checking its evidence" in page
        assert 'data-testid="drill-result">verifying</a>' in client.get("/drills/").content.decode()
    assert Drill.objects.get(pk=drill.pk).verified_at is None

    assert verify_finished_drills() == 1
    report = client.get(f"/api/v1/drills/{drill.id}/").json()
    assert (report["passed"], report["verifying"]) == (True, False)
    assert 'data-testid="drill-result">pass</a>' in client.get("/drills/").content.decode()


def test_due_schedule_starts_one_drill(workspace: Workspace) -> None:
    from django.utils import timezone

    plan = DrillPlan.objects.create(
        org=workspace.org,
        workspace=workspace,
        workflow_id="execute_rebalance_spend",
        step_id="credit_target_channel",
        fault="rate_limit",
        every_seconds=604800,
        next_run_at=timezone.now(),
        created_by="user:ops",
    )
    assert start_due_drills() == 1
    assert start_due_drills() == 0  # not due again for a week
    plan.refresh_from_db()
    assert plan.next_run_at > timezone.now()
    assert Drill.objects.filter(plan=plan).count() == 1


def test_drill_command_refuses_a_bad_plan(workspace: Workspace) -> None:
    with pytest.raises(CommandError, match="needs an earlier step"):
        command(
            "drill",
            workflow="execute_rebalance_spend",
            step="debit_source_channel",
            fault="compensation_fails",
            org="acme",
        )
    assert not Drill.objects.exists()
