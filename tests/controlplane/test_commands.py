import json
from pathlib import Path

import pytest
from django.core.management.base import CommandError

from controlplane.models import Decision, ServiceAccount
from runs.models import WorkflowRun
from tests.conftest import command, load_fixture

pytestmark = pytest.mark.django_db


def write(tmp_path: Path, body: object) -> Path:
    path = tmp_path / "decision.json"
    path.write_text(json.dumps(body) if not isinstance(body, str) else body)
    return path


def test_submit_receives_a_decision_as_the_agent(agent: ServiceAccount, tmp_path: Path) -> None:
    out = command("submit", str(write(tmp_path, load_fixture("seed_decision.json"))), org="acme")

    decision = Decision.objects.get()
    assert decision.requested_by == "agent:decision-runtime-cron"
    assert "policy: allow" in out
    assert WorkflowRun.objects.get().status == "pending"


def test_submit_names_the_bad_field_and_stores_nothing(
    agent: ServiceAccount, tmp_path: Path
) -> None:
    body = load_fixture("seed_decision.json")
    body["action"]["amount"] = "eight hundred"
    with pytest.raises(CommandError, match=r"action\.amount"):
        command("submit", str(write(tmp_path, body)), org="acme")
    with pytest.raises(CommandError, match="line 1"):
        command("submit", str(write(tmp_path, "{oops")), org="acme")
    assert not Decision.objects.exists()
