"""The rest of the API: lists with filters and cursors, held actions, drills, policies,
and the agents' rate limit."""

from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from controlplane.access.tokens import create_token
from controlplane.devtools import sample_data
from controlplane.models import PolicyVersion, Role, ServiceAccount
from controlplane.policy.versions import activate_policy
from tests.conftest import load_fixture, rebalance, submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client: Client, member: Any) -> Client:
    client.force_login(member("boss", Role.ADMIN))
    return client


def test_decision_list_filters_and_pages_by_cursor(agent: ServiceAccount, admin: Client) -> None:
    made = sample_data.decisions(agent, 130)
    first = admin.get("/api/v1/decisions/").json()
    second = admin.get(first["next"]).json()
    ids = [d["id"] for d in first["entries"] + second["entries"]]
    assert ids == [d.id for d in reversed(made)]
    assert second["next"] is None
    assert admin.get("/api/v1/decisions/", {"status": "compensated"}).json()["entries"] == []
    bad = admin.get("/api/v1/decisions/", {"received_from": "soon"})
    assert bad.status_code == 400 and "received_from" in bad.json()["error"]["fields"]


def test_decision_reads_back_in_the_seeds_field_order(agent: ServiceAccount, admin: Client) -> None:
    seed = load_fixture("seed_decision.json")
    created = admin.post("/api/v1/decisions/", seed, content_type="application/json").json()
    read = admin.get(f"/api/v1/decisions/{seed['id']}/").json()
    [listed] = admin.get("/api/v1/decisions/").json()["entries"]

    # Stored as jsonb, the document comes back in its own key order; the API keeps the seed's.
    for body in (created, read, listed):
        assert list(body)[: len(seed)] == list(seed)
        assert {k: body[k] for k in seed} == seed


def read(client: Client, url: str) -> tuple[int, int]:
    """Return how many queries a list took and how many entries it listed."""
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured), len(response.json()["entries"])


def test_lists_take_the_same_queries_however_many_rows(
    agent: ServiceAccount, admin: Client
) -> None:
    def add_rows(count: int) -> None:
        sample_data.decisions(agent, count)
        for _ in range(count):
            submit(agent, rebalance(amount=7000))
            activate_policy(
                workspace=agent.workspace,
                text=f"version: v{PolicyVersion.objects.count()}\n",
                activated_by="test",
            )
            admin.post(
                "/api/v1/drills/",
                {
                    "workflow_id": "execute_rebalance_spend",
                    "step_id": "credit_target_channel",
                    "fault": "rate_limit",
                },
                content_type="application/json",
            )

    urls = ["/api/v1/decisions/", "/api/v1/approvals/", "/api/v1/drills/", "/api/v1/policies/"]
    add_rows(1)
    few = [read(admin, url) for url in urls]
    add_rows(4)
    many = [read(admin, url) for url in urls]
    assert [queries for queries, _ in many] == [queries for queries, _ in few]
    assert all(more > less for (_, more), (_, less) in zip(many, few, strict=True))


def test_decision_detail_carries_its_timeline(agent: ServiceAccount, admin: Client) -> None:
    [decision] = sample_data.decisions(agent, 1)
    sample_data.mutations(decision, 2)
    body = admin.get(f"/api/v1/decisions/{decision.id}/").json()
    assert [m["status"] for m in body["mutations"]] == ["success", "rolled_back"] * 2
    assert body["run"]["status"] == "completed"
    assert isinstance(body["events"], list)


def test_held_actions_list(agent: ServiceAccount, admin: Client) -> None:
    submit(agent, rebalance(amount=7000))
    [held] = admin.get("/api/v1/approvals/").json()["entries"]
    assert held["held_by"] == ["large-shift-needs-human"]
    assert held["at_stake"] == "USD 7,000.00/day"
    assert [step["undo"] for step in held["plan"]] == [
        "credit_source_channel",
        "debit_target_channel",
    ]


def test_policies_validate_with_line_and_field_then_activate(
    agent: ServiceAccount, admin: Client
) -> None:
    bad = admin.post(
        "/api/v1/policies/",
        {"text": "version: v\nrules:\n  - {id: a, when: {x: 1}, decision: allow}\n"},
        content_type="application/json",
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["fields"]["rules[0].when.x"][0].startswith("line 3:")
    good = "version: v7\nrules:\n  - {id: a, when: {type: rebalance_spend}, decision: allow}\n"
    checked = admin.post(
        "/api/v1/policies/", {"text": good}, content_type="application/json"
    ).json()
    assert (checked["valid"], checked["active"]) == (True, None)
    assert PolicyVersion.objects.get(is_active=True).version == "budget_policy_v1"
    activated = admin.post(
        "/api/v1/policies/", {"text": good, "activate": True}, content_type="application/json"
    ).json()
    assert activated["active"]["version"] == "v7"
    assert admin.get("/api/v1/policies/").json()["entries"][0]["version"] == "v7"


def test_only_admins_post_policies(agent: ServiceAccount, client: Client, member: Any) -> None:
    client.force_login(member("ops", Role.OPERATOR))
    response = client.post(
        "/api/v1/policies/", {"text": "version: v\n"}, content_type="application/json"
    )
    assert response.status_code == 403


def test_agent_tokens_are_rate_limited(
    agent: ServiceAccount, client: Client, settings: Any
) -> None:
    settings.BACKSTOP_AGENT_RATE = "3/min"
    _, secret = create_token(service_account=agent, created_by="x")
    headers = {"Authorization": f"Bearer {secret}"}
    codes = [client.get("/api/v1/decisions/", headers=headers).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    assert client.get("/api/v1/decisions/").status_code == 401  # sessions are not counted
