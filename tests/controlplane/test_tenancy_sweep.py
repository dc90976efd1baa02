"""Every route that takes an object id, tried by a user and a token of another org: 404."""

from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from controlplane.access.tokens import create_token
from controlplane.devtools import sample_data
from controlplane.drills.start import start_drill
from controlplane.models import Organization, Role, ServiceAccount, Workspace

pytestmark = pytest.mark.django_db


def routes(patterns: list[Any] | None = None, prefix: str = "") -> list[str]:
    found: list[str] = []
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            if "admin" in str(entry.pattern):
                continue  # the Django admin is for staff of the whole installation
            found += routes(entry.url_patterns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            found.append(prefix + str(entry.pattern))
    return found


@pytest.fixture
def other_org_ids(agent: ServiceAccount) -> dict[str, str]:
    """Objects of org B (the agent's)."""
    [decision] = sample_data.decisions(agent, 1)
    drill = start_drill(
        workspace=agent.workspace,
        workflow_id="execute_rebalance_spend",
        step_id="credit_target_channel",
        fault="fatal",
        started_by="user:b",
    )
    token, _ = create_token(service_account=agent, created_by="user:b")
    return {
        "decision_id": decision.id,
        "run_id": decision.runs.get().run_id,
        "drill_id": drill.id,
        "token_id": str(token.id),
    }


def fill(pattern: str, ids: dict[str, str]) -> str | None:
    url = "/" + pattern
    for name, value in ids.items():
        for converter in ("str", "int"):
            url = url.replace(f"<{converter}:{name}>", value)
    return None if "<" in url else url


@pytest.fixture
def clients(member: Any) -> dict[str, Client]:
    org_a = Organization.objects.create(name="A", slug="a")
    space = Workspace.objects.create(org=org_a, name="Default", slug="default")
    admin = Client()
    admin.force_login(member("admin-of-a", Role.ADMIN, org=org_a))
    agent_a = ServiceAccount.objects.create(org=org_a, workspace=space, name="agent-a")
    _, secret = create_token(service_account=agent_a, created_by="x")
    token = Client(headers={"Authorization": f"Bearer {secret}"})
    return {"admin of A": admin, "token of A": token}


def test_every_object_route_is_404_across_orgs(
    other_org_ids: dict[str, str], clients: dict[str, Client]
) -> None:
    tried = 0
    for pattern in routes():
        url = fill(pattern, other_org_ids)
        if url is None or url == "/" + pattern:
            continue  # not object-scoped
        for who, client in clients.items():
            for method in ("get", "post"):
                response = getattr(client, method)(url, {}, content_type="application/json")
                if response.status_code == 405:
                    continue
                tried += 1
                if who == "token of A" and not url.startswith("/api/"):
                    # Tokens are for the API; the dashboard sends them to the login page.
                    assert response.status_code == 302 and "/login/" in response["Location"]
                    continue
                assert response.status_code == 404, (who, method, url, response.status_code)
                assert other_org_ids["decision_id"].encode() not in response.content
    assert tried >= 20
