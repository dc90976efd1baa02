"""Held runs: who may decide, what a decision does, and when an approval runs out."""

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from controlplane.models import Organization, Role, ServiceAccount, Workspace
from mutations.models import Mutation, RuntimeEvent
from runs.approvals import expire_due
from runs.models import Approval, RunStatus, WorkflowRun
from tests.conftest import drain, rebalance, submit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def held(agent: ServiceAccount) -> WorkflowRun:
    """A $6,000/day shift: the budget policy holds it for a person."""
    decision = submit(agent, rebalance(amount=6000))
    run = WorkflowRun.objects.get(decision=decision)
    assert run.status == RunStatus.AWAITING_APPROVAL
    return run


def api(client: Client, run: WorkflowRun, verdict: str, comment: str = "") -> Any:
    return client.post(
        f"/api/v1/runs/{run.run_id}/{verdict}/",
        {"comment": comment},
        content_type="application/json",
    )


def test_approved_run_is_dispatched_and_completes(
    held: WorkflowRun, client: Client, member: Any
) -> None:
    client.force_login(member("ann", Role.APPROVER))
    response = api(client, held, "approve", "launch week, agreed with finance")

    assert response.status_code == 200
    assert response.json()["status"] == "approved"
    assert response.json()["run"]["status"] == "pending"
    drain()
    held.refresh_from_db()
    assert held.status == RunStatus.COMPLETED
    approval = Approval.objects.select_related("decided_by").get(run=held)
    assert approval.decided_by is not None and approval.decided_by.username == "ann"
    assert approval.comment == "launch week, agreed with finance"
    decided = RuntimeEvent.objects.get(run=held, kind="approval_decided")
    assert (decided.user.username if decided.user else None, decided.surface) == ("ann", "api")


def test_rejected_run_ends_rejected_with_no_mutation(
    held: WorkflowRun, client: Client, member: Any
) -> None:
    client.force_login(member("ann", Role.APPROVER))
    assert api(client, held, "reject", "too much at once").status_code == 200
    drain()
    held.refresh_from_db()
    assert held.status == RunStatus.REJECTED
    assert not Mutation.objects.filter(run=held).exists()
    assert api(client, held, "approve").status_code == 409  # decided once, for good


def test_viewer_operator_and_own_decision_are_refused(
    agent: ServiceAccount, client: Client, member: Any
) -> None:
    boss = member("boss", Role.ADMIN)
    client.force_login(boss)
    response = client.post(
        "/api/v1/decisions/", rebalance(amount=7000), content_type="application/json"
    )
    run = WorkflowRun.objects.get(decision_id=response.json()["id"])
    assert run.requested_by == "user:boss"

    assert api(client, run, "approve").status_code == 403  # separation of duties
    for role in (Role.VIEWER, Role.OPERATOR):
        client.force_login(member(f"x-{role}", role))
        assert api(client, run, "approve").status_code == 403
    run.refresh_from_db()
    assert run.status == RunStatus.AWAITING_APPROVAL
    assert Approval.objects.get(run=run).status == "pending"


def test_user_of_another_org_gets_404(held: WorkflowRun, client: Client, member: Any) -> None:
    other = Organization.objects.create(name="Other", slug="other")
    Workspace.objects.create(org=other, name="Default", slug="default")
    client.force_login(member("stranger", Role.ADMIN, org=other))
    assert api(client, held, "approve").status_code == 404
    assert client.post(f"/runs/{held.run_id}/approve/").status_code == 404
    assert WorkflowRun.objects.get(pk=held.pk).status == RunStatus.AWAITING_APPROVAL


def test_post_without_csrf_token_is_refused(held: WorkflowRun, member: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(member("ann", Role.APPROVER))
    assert client.post(f"/runs/{held.run_id}/approve/", {"comment": "x"}).status_code == 403
    assert api(client, held, "approve").status_code == 403
    assert WorkflowRun.objects.get(pk=held.pk).status == RunStatus.AWAITING_APPROVAL


def test_dashboard_approval_redirects_back_and_shows_who(
    held: WorkflowRun, client: Client, member: Any
) -> None:
    client.force_login(member("ann", Role.APPROVER))
    inbox = client.get("/approvals/").content.decode()
    assert "large-shift-needs-human" in inbox and "USD 6,000.00/day" in inbox
    assert "undone by <code>credit_source_channel</code>" in inbox

    page = f"/decisions/{held.decision_id}/"
    response = client.post(f"/runs/{held.run_id}/approve/", {"comment": "ok", "next": page})
    assert response.status_code == 302 and response["Location"] == page
    html = client.get(page).content.decode()
    assert "approved" in html and "by ann" in html and "“ok”" in html
    decided = RuntimeEvent.objects.get(run=held, kind="approval_decided")
    assert decided.surface == "dashboard"


def test_unanswered_approval_expires(held: WorkflowRun, client: Client, member: Any) -> None:
    Approval.objects.filter(run=held).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert expire_due() == 1
    held.refresh_from_db()
    assert held.status == RunStatus.EXPIRED
    client.force_login(member("ann", Role.APPROVER))
    assert api(client, held, "approve").status_code == 409


def test_approval_is_bound_to_the_decision_payload(
    held: WorkflowRun, client: Client, member: Any
) -> None:
    Approval.objects.filter(run=held).update(payload_hash="0" * 64)
    client.force_login(member("ann", Role.APPROVER))
    response = api(client, held, "approve")
    assert response.status_code == 409
    assert "differs" in response.json()["error"]["message"]
    assert WorkflowRun.objects.get(pk=held.pk).status == RunStatus.AWAITING_APPROVAL
