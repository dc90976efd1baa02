"""The heartbeat's renewal: every run a runner holds, and only those."""

from datetime import timedelta

import pytest
from django.utils import timezone

from controlplane.models import ServiceAccount
from runs.leases import lease_seconds, renew_leases
from runs.models import WorkflowRun
from tests.conftest import allow_everything, rebalance, submit

pytestmark = pytest.mark.django_db(transaction=True)


def test_renewal_extends_the_leases_of_this_runner_and_its_threads_only(
    agent: ServiceAccount,
) -> None:
    allow_everything(agent.workspace)
    for _ in range(3):
        submit(agent, rebalance())
    soon = timezone.now() + timedelta(seconds=1)
    first, second, other = WorkflowRun.objects.order_by("created_at")
    for run, holder in ((first, "host:1:abc"), (second, "host:1:abc-2"), (other, "host:10:abc")):
        WorkflowRun.objects.filter(pk=run.pk).update(leased_by=holder, lease_expires_at=soon)

    renew_leases("host:1:abc")

    expires = dict(WorkflowRun.objects.values_list("leased_by", "lease_expires_at"))
    renewed = soon + lease_seconds() / 2
    assert (expires["host:1:abc"] or soon) > renewed
    assert (expires["host:1:abc-2"] or soon) > renewed  # a worker thread of it
    assert expires["host:10:abc"] == soon
