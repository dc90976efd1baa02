"""M-of-N approvals: a rule asks for several distinct approvers; the run moves once."""

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from controlplane.models import Role, ServiceAccount, Workspace
from controlplane.policy.rules import PolicyInvalid, parse_policy
from controlplane.policy.versions import activate_policy
from mutations.models import RuntimeEvent
from mutations.services import Surface
from runs import approvals
from runs.approvals import ApprovalRefused
from runs.models import Approval, ApprovalVote, RunStatus, WorkflowRun
from tests.conftest import drain, rebalance, submit

pytestmark = pytest.mark.django_db(transaction=True)

TWO_OF_N = """\
version: two_approvers_v1
default: require_human
rules:
  - id: large-shift-needs-two
    when: { action.amount: { gt: 5000 } }
    decision: require_human
    approvals: 2
  - id: allow-market-rebalance
    when: { type: rebalance_spend, confidence: { gte: 0.6 } }
    decision: allow
"""


def two_of_n(workspace: Workspace, extra: str = "") -> None:
    text = TWO_OF_N.replace("    approvals: 2\n", f"    approvals: 2\n{extra}")
    version = "two_approvers_v2" if extra else "two_approvers_v1"
    text = text.replace("two_approvers_v1", version)
    activate_policy(workspace=workspace, text=text, activated_by="test")


@pytest.fixture
def held(agent: ServiceAccount, workspace: Workspace) -> WorkflowRun:
    """A $6,000/day shift that the policy holds for two distinct approvers."""
    two_of_n(workspace)
    decision = submit(agent, rebalance(amount=6000))
    run = WorkflowRun.objects.get(decision=decision)
    assert run.status == RunStatus.AWAITING_APPROVAL
    return run


def approve(client: Client, run: WorkflowRun, comment: str = "") -> Any:
    return client.post(
        f"/api/v1/runs/{run.run_id}/approve/",
        {"comment": comment},
        content_type="application/json",
    )


def test_rule_asks_for_two_approvals_and_the_approval_records_it(held: WorkflowRun) -> None:
    approval = Approval.objects.get(run=held)
    assert (approval.required, approval.approver_roles) == (2, [])


def test_one_approval_leaves_the_run_held(held: WorkflowRun, client: Client, member: Any) -> None:
    client.force_login(member("ann", Role.APPROVER))
    response = approve(client, held, "fine by me")

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["approvals"], body["approvals_required"], body["remaining"]) == (
        "pending",
        1,
        2,
        1,
    )
    assert body["approved_by"] == ["user:ann"]
    assert body["run"]["status"] == "awaiting_approval"
    drain()
    held.refresh_from_db()
    assert held.status == RunStatus.AWAITING_APPROVAL
    vote = RuntimeEvent.objects.get(run=held, kind=RuntimeEvent.Kind.APPROVAL_DECIDED)
    assert vote.payload["approvals"] == 1 and vote.payload["required"] == 2
    assert vote.payload["decision"] == "pending"
    assert vote.delta_summary == "user:ann approved the run: 1 of 2 approvals"


def test_same_approver_twice_is_refused(held: WorkflowRun, client: Client, member: Any) -> None:
    client.force_login(member("ann", Role.APPROVER))
    assert approve(client, held).status_code == 200
    again = approve(client, held)

    assert again.status_code == 409
    assert "already approved" in again.json()["error"]["message"]
    assert ApprovalVote.objects.filter(approval__run=held).count() == 1


def test_submitters_approval_is_refused(
    agent: ServiceAccount, workspace: Workspace, client: Client, member: Any
) -> None:
    two_of_n(workspace)
    boss = member("boss", Role.ADMIN)
    client.force_login(boss)
    submitted = client.post(
        "/api/v1/decisions/", rebalance(amount=7000), content_type="application/json"
    )
    run = WorkflowRun.objects.get(decision_id=submitted.json()["id"])

    response = approve(client, run)

    assert response.status_code == 403
    assert "Separation of duties" in response.json()["error"]["message"]
    assert not ApprovalVote.objects.filter(approval__run=run).exists()


def test_second_distinct_approver_dispatches_the_run_once(
    held: WorkflowRun, client: Client, member: Any
) -> None:
    client.force_login(member("ann", Role.APPROVER))
    approve(client, held)
    client.force_login(member("bob", Role.ADMIN))
    response = approve(client, held, "second pair of eyes")

    body = response.json()
    assert (body["status"], body["approvals"], body["remaining"]) == ("approved", 2, 0)
    assert body["approved_by"] == ["user:ann", "user:bob"]
    assert body["run"]["status"] == "pending"
    drain()
    held.refresh_from_db()
    assert held.status == RunStatus.COMPLETED
    assert RuntimeEvent.objects.filter(run=held, kind=RuntimeEvent.Kind.RUN_STARTED).count() == 1
    approval = Approval.objects.select_related("decided_by").get(run=held)
    assert approval.decided_by is not None and approval.decided_by.username == "bob"
    last = RuntimeEvent.objects.filter(run=held, kind="approval_decided").order_by("timestamp")
    assert [e.payload["approvals"] for e in last] == [1, 2]
    assert last.last().payload["decision"] == "approved"  # type: ignore[union-attr]


def test_one_rejection_ends_the_run_rejected(
    held: WorkflowRun, client: Client, member: Any
) -> None:
    client.force_login(member("ann", Role.APPROVER))
    approve(client, held)
    client.force_login(member("bob", Role.APPROVER))
    response = client.post(
        f"/api/v1/runs/{held.run_id}/reject/", {"comment": "no"}, content_type="application/json"
    )

    assert response.json()["status"] == "rejected"
    held.refresh_from_db()
    assert held.status == RunStatus.REJECTED
    client.force_login(member("cat", Role.APPROVER))
    assert approve(client, held).status_code == 409


def test_approver_roles_narrow_who_decides(
    agent: ServiceAccount, workspace: Workspace, client: Client, member: Any
) -> None:
    two_of_n(workspace, extra="    approver_roles: [admin]\n")
    run = WorkflowRun.objects.get(decision=submit(agent, rebalance(amount=6000)))
    assert Approval.objects.get(run=run).approver_roles == ["admin"]

    client.force_login(member("ann", Role.APPROVER))
    refused = approve(client, run)

    assert refused.status_code == 403
    assert "an admin" in refused.json()["error"]["message"]
    client.force_login(member("root", Role.ADMIN))
    assert approve(client, run).json()["approvals"] == 1


def test_pages_show_the_count_and_who_approved(
    held: WorkflowRun, client: Client, member: Any
) -> None:
    ann = member("ann", Role.APPROVER)
    client.force_login(ann)
    approve(client, held)

    page = client.get("/approvals/").content.decode()
    assert "1 of 2 approvals" in page and "user:ann" in page
    assert "You approved this run" in page
    client.force_login(member("bob", Role.APPROVER))
    page = client.get("/approvals/").content.decode()
    assert "1 of 2 approvals" in page and "You approved this run" not in page
    timeline = client.get(f"/decisions/{held.decision_id}/").content.decode()
    assert "1 of 2 approvals" in timeline and "user:ann" in timeline
    assert 'data-testid="voted"' not in timeline  # bob has yet to vote
    [listed] = client.get("/api/v1/approvals/").json()["entries"]
    assert (listed["approvals"], listed["approvals_required"], listed["remaining"]) == (1, 2, 1)
    assert listed["approved_by"] == ["user:ann"]
    client.force_login(ann)
    timeline = client.get(f"/decisions/{held.decision_id}/").content.decode()
    assert 'data-testid="voted"' in timeline


def test_a_vote_on_an_expired_approval_is_refused_and_the_run_expires(
    held: WorkflowRun, client: Client, member: Any
) -> None:
    Approval.objects.filter(run=held).update(expires_at=timezone.now() - timedelta(seconds=1))
    client.force_login(member("ann", Role.APPROVER))
    response = approve(client, held)

    assert response.status_code == 409
    assert "expired" in response.json()["error"]["message"]
    held.refresh_from_db()
    assert held.status == RunStatus.EXPIRED  # kept, although the vote was refused
    assert not ApprovalVote.objects.filter(approval__run=held).exists()


@pytest.mark.parametrize(
    ("rule", "field", "message"),
    [
        ("    approvals: 0\n", "rules[0].approvals", "whole number from 1 to 10"),
        ("    approvals: two\n", "rules[0].approvals", "whole number"),
        ("    approver_roles: [operator]\n", "rules[0].approver_roles", "approver and admin"),
        ("    approver_roles: admin\n", "rules[0].approver_roles", "list"),
    ],
)
def test_invalid_approval_fields_name_the_line_and_field(
    rule: str, field: str, message: str
) -> None:
    text = TWO_OF_N.replace("    approvals: 2\n", rule)
    with pytest.raises(PolicyInvalid) as invalid:
        parse_policy(text)
    [problem] = invalid.value.problems
    assert (problem.line, problem.field) == (7, field)
    assert message in problem.message


def test_approvals_only_on_a_require_human_rule() -> None:
    text = TWO_OF_N.replace("decision: allow\n", "decision: allow\n    approvals: 3\n")
    with pytest.raises(PolicyInvalid) as invalid:
        parse_policy(text)
    [problem] = invalid.value.problems
    assert (problem.line, problem.field) == (11, "rules[1].approvals")
    assert "only a require_human rule" in problem.message


def test_the_most_restrictive_holding_rule_sets_the_approvals() -> None:
    policy = parse_policy(
        TWO_OF_N.replace(
            "  - id: allow-market",
            "  - id: huge-shift\n    when: { action.amount: { gt: 9000 } }\n"
            "    decision: require_human\n    approvals: 3\n    approver_roles: [admin]\n"
            "  - id: allow-market",
        )
    )
    huge = policy.evaluate({"type": "rebalance_spend", "action": {"amount": 10000}})
    large = policy.evaluate({"type": "rebalance_spend", "action": {"amount": 6000}})

    assert (huge.approvals, huge.approver_roles) == (3, ("admin",))
    assert (large.approvals, large.approver_roles) == (2, ())


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="concurrent writers need PostgreSQL: SQLite serializes the whole database",
)
def test_twenty_concurrent_approvals_dispatch_the_run_once(held: WorkflowRun, member: Any) -> None:
    voters = [member(f"approver{i}", Role.APPROVER) for i in range(20)]
    start = threading.Barrier(len(voters))
    outcomes: list[str] = []
    lock = threading.Lock()

    def vote(user: Any) -> None:
        try:
            start.wait()
            approval = approvals.decide(
                run_id=held.run_id,
                org_id=held.org_id,
                approve=True,
                user_id=user.pk,
                actor=f"user:{user.username}",
                payload_hash=held.decision.payload_hash,
                surface=Surface.API,
            )
            outcome = approval.status
        except ApprovalRefused:
            outcome = "refused"
        finally:
            connections.close_all()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=vote, args=(user,)) for user in voters]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes).count("approved") == 1
    assert outcomes.count("pending") == 1
    assert outcomes.count("refused") == 18
    assert ApprovalVote.objects.filter(approval__run=held).count() == 2
    dispatched = RuntimeEvent.objects.filter(
        run=held, kind=RuntimeEvent.Kind.APPROVAL_DECIDED, payload__decision="approved"
    )
    assert dispatched.count() == 1
    drain()
    held.refresh_from_db()
    assert held.status == RunStatus.COMPLETED
    assert RuntimeEvent.objects.filter(run=held, kind=RuntimeEvent.Kind.RUN_STARTED).count() == 1
