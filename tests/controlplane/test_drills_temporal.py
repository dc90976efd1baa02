"""Compensation drills on a real Temporal dev server: the same drills, the same checks."""

from typing import Any

import pytest

from controlplane.models import Drill, Workspace
from runs.models import WorkflowRun
from tests.conftest import command

pytestmark = pytest.mark.django_db(transaction=True)


def test_drill_all_on_temporal_passes_for_every_built_in_workflow(
    workspace: Workspace, temporal: Any, settings: Any
) -> None:
    settings.BACKSTOP_ENGINE = "builtin"  # the flag, not the setting, picks the engine

    out = command("drill", "--all", "--drain", engine="temporal", org="acme")

    drills = Drill.objects.count()
    assert out.count("PASS") == drills >= 6
    assert "FAIL" not in out
    assert set(Drill.objects.values_list("passed", flat=True)) == {True}
    assert set(Drill.objects.values_list("workflow_id", flat=True)) == {
        "execute_rebalance_spend",
        "adjust_budget",
        "pause_campaign",
        "delete_campaign",
    }
    assert Drill.objects.filter(fault="compensation_fails", passed=True).exists()
    runs = WorkflowRun.objects.filter(drill__isnull=False)
    assert runs.count() == drills
    assert set(runs.values_list("engine", flat=True)) == {"temporal"}
    assert not runs.filter(dispatched_at__isnull=True).exists()
