"""Audited redrive: a decision that ended badly runs again as a new, recorded attempt."""

import threading
from typing import Any

import pytest
from django.db import connection, connections
from django.test import Client

from controlplane.intake.redrive import RedriveRefused, redrive_decision
from controlplane.models import Decision, Membership, Role, ServiceAccount
from controlplane.notify.models import Delivery, WebhookEndpoint
from mutations.models import Mutation, RuntimeEvent, SandboxFault
from mutations.services import Surface
from runs.keys import run_key, step_calls_prefix
from runs.models import RunStatus, StepExecution, WorkflowRun
from tests.conftest import drain, rebalance, submit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def compensated(agent: ServiceAccount) -> Decision:
    """A decision whose first attempt's credit fails for good, so its debit is undone."""
    document = rebalance()
    SandboxFault.objects.create(
        org=agent.org,
        platform="google",
        kind="fatal",
        key_prefix=step_calls_prefix(run_key(document["id"], 1), "credit_target_channel"),
    )
    decision = submit(agent, document)
    drain()
    assert WorkflowRun.objects.get(decision=decision).status == RunStatus.COMPENSATED
    return decision


def redrive(client: Client, decision: Decision, reason: str = "google is back") -> Any:
    return client.post(
        f"/api/v1/decisions/{decision.id}/redrive/",
        {"reason": reason},
        content_type="application/json",
    )


def test_redrive_creates_attempt_two_with_its_own_keys(
    compensated: Decision, client: Client, member: Any
) -> None:
    client.force_login(member("olga", Role.OPERATOR))
    response = redrive(client, compensated)

    assert response.status_code == 201
    body = response.json()
    assert (body["attempt"], body["outcome"], body["requested_by"]) == (2, "allow", "user:olga")
    assert body["run"]["idempotency_key"] == f"{compensated.id}-attempt-2"
    drain()
    first, second = WorkflowRun.objects.filter(decision=compensated).order_by("created_at")
    assert (first.status, second.status) == (RunStatus.COMPENSATED, RunStatus.COMPLETED)
    assert second.idempotency_key == run_key(compensated.id, 2)
    keys = set(StepExecution.objects.filter(run=second).values_list("idempotency_key", flat=True))
    assert keys and all(k.startswith(f"{second.idempotency_key}:") for k in keys)
    assert not keys & set(
        StepExecution.objects.filter(run=first).values_list("idempotency_key", flat=True)
    )
    assert Mutation.objects.filter(run=second, status="success").count() == 2


def test_redrive_records_who_when_and_why(
    compensated: Decision, client: Client, member: Any
) -> None:
    client.force_login(member("olga", Role.OPERATOR))
    redrive(client, compensated, "the platform outage is over")

    asked = RuntimeEvent.objects.get(decision=compensated, payload__redrive=True)
    assert asked.user is not None and asked.user.username == "olga"
    assert asked.surface == "api"
    assert asked.payload["reason"] == "the platform outage is over"
    assert asked.payload["attempt"] == 2
    assert asked.payload["previous_status"] == "compensated"
    assert "user:olga redrove the decision as attempt 2" in asked.delta_summary
    gate = RuntimeEvent.objects.get(
        decision=compensated, kind=RuntimeEvent.Kind.POLICY_EVALUATED, payload__attempt=2
    )
    assert gate.payload["outcome"] == "allow"


def test_redrive_is_refused_for_a_viewer_naming_the_role(
    compensated: Decision, client: Client, member: Any
) -> None:
    client.force_login(member("vic", Role.VIEWER))
    response = redrive(client, compensated)

    assert response.status_code == 403
    message = response.json()["error"]["message"]
    assert "operator" in message and "your role is viewer" in message
    page = client.post(f"/decisions/{compensated.id}/redrive/", {"reason": "try"})
    assert page.status_code == 403
    assert WorkflowRun.objects.filter(decision=compensated).count() == 1


def test_redrive_needs_a_reason(compensated: Decision, client: Client, member: Any) -> None:
    client.force_login(member("olga", Role.OPERATOR))
    response = redrive(client, compensated, "")

    assert response.status_code == 400
    assert "reason" in response.json()["error"]["fields"]


def test_only_failed_compensated_or_expired_decisions_are_redriven(
    agent: ServiceAccount, client: Client, member: Any
) -> None:
    decision = submit(agent, rebalance())
    drain()
    client.force_login(member("olga", Role.OPERATOR))
    response = redrive(client, decision)

    assert response.status_code == 409
    assert "latest run" in response.json()["error"]["message"]
    assert "completed" in response.json()["error"]["message"]


def test_held_verdict_holds_the_new_attempt_again(
    agent: ServiceAccount, client: Client, member: Any
) -> None:
    held = submit(agent, rebalance(amount=6000))
    run = WorkflowRun.objects.get(decision=held)
    WorkflowRun.objects.filter(pk=run.pk).update(status=RunStatus.EXPIRED)
    WebhookEndpoint.objects.create(
        org=agent.org, url="https://hooks.example.com/", kinds=["approval.requested"]
    )
    client.force_login(member("olga", Role.OPERATOR))
    body = redrive(client, held, "nobody saw it in time").json()

    assert body["outcome"] == "require_human"
    assert body["run"]["status"] == "awaiting_approval"
    again = WorkflowRun.objects.get(pk=body["run"]["run_id"])
    assert again.approval.status == "pending"
    [told] = Delivery.objects.filter(kind="approval.requested")
    assert again.run_id in str(told.payload)


def test_both_attempts_show_on_the_timeline_and_in_the_api(
    compensated: Decision, client: Client, member: Any
) -> None:
    client.force_login(member("olga", Role.OPERATOR))
    page = client.get(f"/decisions/{compensated.id}/").content.decode()
    assert 'data-testid="redrive"' in page and "Redrive as attempt 2" in page
    response = client.post(
        f"/decisions/{compensated.id}/redrive/", {"reason": "google is back"}, follow=True
    )
    assert "Attempt 2 started" in response.content.decode()
    drain()

    page = client.get(f"/decisions/{compensated.id}/").content.decode()
    assert "Attempt 1: run" in page and "Attempt 2: run" in page
    assert f"{compensated.id}<wbr>-attempt-2" in page
    assert 'data-testid="redrive"' not in page  # the latest attempt completed
    detail = client.get(f"/api/v1/decisions/{compensated.id}/").json()
    assert [r["idempotency_key"] for r in detail["runs"]] == [
        f"{compensated.id}-attempt-1",
        f"{compensated.id}-attempt-2",
    ]
    assert [r["status"] for r in detail["runs"]] == ["compensated", "completed"]
    assert detail["run"]["idempotency_key"] == f"{compensated.id}-attempt-2"


def test_viewer_sees_no_redrive_form(compensated: Decision, client: Client, member: Any) -> None:
    client.force_login(member("vic", Role.VIEWER))
    page = client.get(f"/decisions/{compensated.id}/").content.decode()
    assert 'data-testid="redrive"' not in page


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="concurrent writers need PostgreSQL: SQLite serializes the whole database",
)
def test_concurrent_redrives_start_one_attempt(compensated: Decision, member: Any) -> None:
    operators = [member(f"op{i}", Role.OPERATOR) for i in range(5)]
    start = threading.Barrier(len(operators))
    outcomes: list[str] = []
    lock = threading.Lock()

    def ask(user: Any) -> None:
        membership = Membership.objects.select_related("org").get(user=user)
        try:
            start.wait()
            done = redrive_decision(
                membership=membership,
                user=user,
                decision_id=compensated.id,
                reason="at once",
                surface=Surface.API,
            )
            outcome = f"attempt {done.attempt}"
        except RedriveRefused:
            outcome = "refused"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=ask, args=(user,)) for user in operators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["attempt 2"] + ["refused"] * 4
    assert WorkflowRun.objects.filter(decision=compensated).count() == 2
