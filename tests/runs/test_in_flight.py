"""A runner makes calls to platforms outside the database side by side, up to --in-flight."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

from controlplane.models import ServiceAccount
from mutations.connectors import Applied, Change, register_connector, unregister_connector
from mutations.models import Mutation
from runs.models import RunStatus, WorkflowRun
from runs.runner import Worker
from runs.workflows import Step, Workflow, register
from runs.workflows.registry import unregister
from tests.conftest import allow_everything, rebalance, submit

pytestmark = pytest.mark.django_db(transaction=True)

WAIT_SECONDS = 5.0


class GatedPlatform:
    """A platform outside the database whose calls each wait, up to WAIT_SECONDS, until
    ``width`` calls are inside at once; it remembers the most it saw together."""

    platform = "gated"
    api_name = "gated_api"
    sandbox = True
    in_database = False

    def __init__(self, width: int) -> None:
        self.width = width
        self.inside = 0
        self.most = 0
        self.applied: list[str] = []
        self._changed = threading.Condition()

    def apply(
        self, *, org_id: str, idempotency_key: str, change: Change, timeout: float, call: Any = None
    ) -> Applied:
        with self._changed:
            self.inside += 1
            self.most = max(self.most, self.inside)
            self._changed.notify_all()
            self._changed.wait_for(lambda: self.most >= self.width, timeout=WAIT_SECONDS)
            self.inside -= 1
            self.applied.append(idempotency_key)
        return Applied({"ok": True})

    def snapshot(self, *, org_id: str, target: dict[str, Any]) -> Any:
        return {"target": target}

    def snapshot_many(self, *, org_id: str, targets: list[dict[str, Any]]) -> list[Any]:
        return [{"target": target} for target in targets]


@pytest.fixture
def gated(agent: ServiceAccount) -> Iterator[GatedPlatform]:
    platform = GatedPlatform(width=4)
    register_connector(platform)
    workflow = register(
        Workflow(
            id="test_gated_call",
            version=1,
            decision_type="test_gated_call",
            scope=lambda d: {"gated": {"object": d["id"]}},  # no two runs share a scope
            validate_action=lambda action: {},
            steps=(
                Step(
                    id="touch",
                    build=lambda d: Change("gated", "touch", {"n": 1}, {"object": d["id"]}),
                    no_rollback_reason="a test call",
                ),
            ),
        )
    )
    allow_everything(agent.workspace)
    yield platform
    unregister(workflow.id, workflow.version)
    unregister_connector(platform.platform)


@pytest.mark.skipif(
    not connection.features.has_select_for_update_skip_locked,
    reason="calls in flight need PostgreSQL (SQLite makes one at a time)",
)
def test_four_runs_have_their_calls_in_flight_together(
    agent: ServiceAccount, gated: GatedPlatform
) -> None:
    for _ in range(4):
        document = rebalance()
        document["type"] = document["action"]["type"] = "test_gated_call"
        submit(agent, document)

    Worker(in_flight=4).run(until_idle=True)

    assert gated.most == 4  # one at a time, each call would have waited alone
    assert len(gated.applied) == len(set(gated.applied)) == 4
    assert set(WorkflowRun.objects.values_list("status", flat=True)) == {RunStatus.COMPLETED}
    assert Mutation.objects.filter(platform="gated", status="success").count() == 4


def test_one_call_at_a_time_when_asked(agent: ServiceAccount, gated: GatedPlatform) -> None:
    gated.width = 1
    for _ in range(3):
        document = rebalance()
        document["type"] = document["action"]["type"] = "test_gated_call"
        submit(agent, document)

    Worker(in_flight=1).run(until_idle=True)

    assert gated.most == 1
    assert Mutation.objects.filter(platform="gated", status="success").count() == 3
