"""Compensation drills on HTTP platforms marked ``sandbox: true``: the connector takes the
planned fault before the call leaves, and the reference server reports the keys it applied."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.drills.schedule import drill_everything
from controlplane.drills.start import DrillRefused, start_drill
from controlplane.drills.verify import verify_drill
from controlplane.models import Drill, Workspace
from mutations.connectors import HttpConnector, HttpPlatform, register_connector
from mutations.models import Mutation
from runs.keys import compensation_key, step_key
from runs.workflows import registry
from runs.workflows.extensions import load_yaml_workflows
from tests.conftest import drain
from tests.platforms import Platforms

# Two steps that succeed on objects no one has made yet, read back by their own requests.
RECORDS = """id: file_record
version: 1
decision_type: file_record
action:
  group: {type: string}
drill:
  action: {group: "{{ drill }}"}
  seed: {iam: [{target: {group: "{{ drill }}"}, state: {members: []}}]}
steps:
  - id: add_member
    platform: iam
    mutation_type: add
    target: {group: "{{ action.group }}"}
    payload: {members: drill.user}
    compensation:
      id: remove_member
      mutation_type: remove
      target: "{{ forward.target }}"
      payload: "{{ forward.payload }}"
  - id: put_record
    platform: ticketing
    mutation_type: put
    target: {record: "{{ action.group }}"}
    request: {method: PUT, path: "/v1/records/{{ action.group }}", json: {open: true}}
    snapshot: {path: "/v1/records/{{ action.group }}"}
    compensation:
      id: delete_record
      mutation_type: delete
      target: "{{ forward.target }}"
      request: {method: DELETE, path: "/v1/records/{{ action.group }}"}
"""


@pytest.fixture
def records(platforms: Platforms, tmp_path: Path) -> Iterator[None]:
    directory = tmp_path / "workflows"
    directory.mkdir()
    (directory / "file_record.yaml").write_text(RECORDS)
    load_yaml_workflows(directory)
    yield
    registry.unregister("file_record", 1)


def checks(drill: Drill) -> dict[str, str]:
    return {c["name"]: ("✓ " if c["passed"] else "✗ ") + c["evidence"] for c in drill.checks}


def run_drill(workspace: Workspace, workflow_id: str, step_id: str, fault: str) -> Drill:
    drill = start_drill(
        workspace=workspace,
        workflow_id=workflow_id,
        step_id=step_id,
        fault=fault,
        started_by="user:ops",
    )
    drain()
    return verify_drill(Drill.objects.get(pk=drill.pk))


def test_failing_the_third_step_undoes_the_first_two_on_the_platforms(
    transactional_db: None, workspace: Workspace, platforms: Platforms
) -> None:
    drill = run_drill(workspace, "grant_access", "reserve_billing_seat", "fatal")

    assert drill.passed, checks(drill)
    assert drill.run is not None and drill.run.status == "compensated"
    key = drill.run.idempotency_key
    # The planned fault never left Backstop: billing heard nothing but snapshots.
    assert [r["path"] for r in platforms.requests("billing")] == ["/v1/snapshot"] * 2
    applied = {o["idempotency_key"] for o in platforms.operations("iam") if o["applied"]}
    assert applied == {step_key(key, "add_to_iam_group"), compensation_key(key, "add_to_iam_group")}
    assert checks(drill)["every idempotency key applied at most once"].startswith(
        "✓ 4 keys applied once each; 0 calls replayed."
    )
    # Each drill names objects of its own: the group is the drill's name, and it is empty.
    group = drill.decision.document["action"]["group"]
    assert group.startswith("drill-")
    assert {"target": {"group": group}, "state": {"members": []}} in platforms.state("iam")


def test_an_ambiguous_call_is_applied_once_and_the_run_completes(
    transactional_db: None, workspace: Workspace, platforms: Platforms, records: None
) -> None:
    drill = run_drill(workspace, "file_record", "put_record", "ambiguous")

    assert drill.passed, checks(drill)
    assert drill.run is not None and drill.run.status == "completed"
    puts = [r for r in platforms.requests("ticketing") if r["method"] == "PUT"]
    assert [r["outcome"] for r in puts] == ["applied", "replayed"]  # sent twice, applied once
    assert (
        "; 1 call replayed, answered with the first result."
        in checks(drill)["every idempotency key applied at most once"]
    )
    row = Mutation.objects.get(run=drill.run, step_id="put_record")
    assert row.receipt["http_status"] == 200


def test_a_step_reads_its_state_with_its_own_request(
    transactional_db: None, workspace: Workspace, platforms: Platforms, records: None
) -> None:
    drill = run_drill(workspace, "file_record", "put_record", "compensation_fails")

    # The record step failed for good; the member's removal failed: the drill expected both.
    assert drill.passed, checks(drill)
    assert drill.run is not None and drill.run.status == "compensation_failed"
    group = drill.decision.document["action"]["group"]
    assert drill.run.scope["ticketing"] == {
        "request": {"method": "GET", "path": f"/v1/records/{group}"}
    }
    reads = [r for r in platforms.requests("ticketing") if r["method"] == "GET"]
    assert [r["path"] for r in reads] == [f"/v1/records/{group}"] * 2
    assert [r["status"] for r in reads] == [404, 404]  # absent before, absent after


def test_a_drill_on_a_platform_that_is_not_a_sandbox_is_refused(
    transactional_db: None, workspace: Workspace, platforms: Platforms
) -> None:
    live = HttpPlatform(name="billing", base_url=platforms.url("billing"), sandbox=False)
    register_connector(HttpConnector(live))

    with pytest.raises(DrillRefused, match="'billing' is a live connector"):
        run_drill(workspace, "grant_access", "add_to_iam_group", "fatal")
    drills = drill_everything(workspace=workspace, started_by="user:ops")

    assert "grant_access" not in {d.workflow_id for d in drills}
    assert not Drill.objects.filter(workflow_id="grant_access").exists()
    assert platforms.requests("billing") == []


def test_drill_everything_includes_the_http_workflow(
    transactional_db: None, workspace: Workspace, platforms: Platforms
) -> None:
    drills = drill_everything(workspace=workspace, started_by="user:ops")
    drain()
    ours: dict[str, Any] = {
        d.step_id + "/" + d.fault: verify_drill(Drill.objects.get(pk=d.pk))
        for d in drills
        if d.workflow_id == "grant_access"
    }

    assert sorted(ours) == [
        "add_to_iam_group/fatal",
        "open_access_ticket/fatal",
        "reserve_billing_seat/compensation_fails",
        "reserve_billing_seat/fatal",
    ]
    assert all(d.passed for d in ours.values()), {k: checks(d) for k, d in ours.items()}
