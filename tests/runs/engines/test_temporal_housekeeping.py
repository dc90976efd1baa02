"""A Temporal worker does the runners' housekeeping: a deployment whose runs are all on
Temporal needs no built-in runner to expire approvals, send webhooks or start drills."""

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from controlplane.models import ServiceAccount
from runs.models import Approval, RunStatus, WorkflowRun
from tests.conftest import rebalance, submit
from tests.temporal import drain_on_temporal

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_temporal_worker_expires_an_unanswered_approval(
    agent: ServiceAccount, temporal: Any
) -> None:
    decision = submit(agent, rebalance(amount=6000))  # held for a person
    run = WorkflowRun.objects.get(decision=decision)
    assert (run.engine, run.status) == ("temporal", RunStatus.AWAITING_APPROVAL)
    Approval.objects.filter(run=run).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert drain_on_temporal() == 0  # nothing to hand over: it was never approved

    run.refresh_from_db()
    assert run.status == RunStatus.EXPIRED
    assert run.dispatched_at is None
    assert Approval.objects.get(run=run).status == "expired"
