"""GET /api/v1/actions/: the catalogue the MCP tool list_actions gives, over REST."""

from typing import Any

import pytest
from django.test import Client

from controlplane.access.tokens import create_token, principal_for
from controlplane.agents.tools import list_actions
from controlplane.models import Role, ServiceAccount

pytestmark = pytest.mark.django_db


def test_an_agent_reads_what_list_actions_tells_it(agent: ServiceAccount, client: Client) -> None:
    text = create_token(service_account=agent, created_by="test")[1]
    response = client.get("/api/v1/actions/", headers={"Authorization": f"Bearer {text}"})
    assert response.status_code == 200
    body = response.json()
    assert body == list_actions(principal_for(text))
    actions = {a["decision_type"]: a for a in body["actions"]}
    assert actions["rebalance_spend"]["steps"] == ["debit_source_channel", "credit_target_channel"]
    assert actions["rebalance_spend"]["policy_preview"]["outcome"] == "allow"
    assert actions["delete_campaign"]["policy_preview"]["outcome"] == "deny"
    assert {"meta", "google"} <= set(body["platforms"])


def test_a_viewer_reads_the_catalogue_of_the_default_workspace(
    agent: ServiceAccount, client: Client, member: Any
) -> None:
    text = create_token(service_account=agent, created_by="test")[1]
    client.force_login(member("watcher", Role.VIEWER))
    # The agent's workspace is the org's only one: the same policy previews.
    assert client.get("/api/v1/actions/").json() == list_actions(principal_for(text))


def test_anonymous_requests_are_refused(client: Client) -> None:
    response = client.get("/api/v1/actions/")
    assert response.status_code in (401, 403)
    assert response.json()["error"]["code"] == "not_authenticated"


def test_the_schema_describes_the_answer_field_for_field(
    agent: ServiceAccount, client: Client, member: Any
) -> None:
    client.force_login(member("boss", Role.ADMIN))
    spec = client.get("/api/schema/", {"format": "json"}).json()
    operation = spec["paths"]["/api/v1/actions/"]["get"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ActionList"
    }
    assert {"401", "403", "429"} <= set(operation["responses"])
    schemas = spec["components"]["schemas"]
    body = client.get("/api/v1/actions/").json()
    assert list(body) == list(schemas["ActionList"]["properties"])
    for action in body["actions"]:
        assert list(action) == list(schemas["ActionOut"]["properties"])
        if action["policy_preview"] is not None:
            assert list(action["policy_preview"]) == list(schemas["PolicyPreviewOut"]["properties"])
    reversibility = schemas["ActionOut"]["properties"]["reversibility"]
    assert reversibility["allOf"] == [{"$ref": "#/components/schemas/ReversibilityEnum"}]
    assert schemas["ReversibilityEnum"]["enum"] == ["reversible", "compensatable", "irreversible"]
