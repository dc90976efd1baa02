"""Agents submit over the API with bearer tokens: hashed, shown once, revocable, one org."""

from typing import Any

import pytest
from django.test import Client

from controlplane.access.tokens import create_token, revoke_token
from controlplane.models import ApiToken, Organization, Role, ServiceAccount, Workspace
from tests.conftest import rebalance

pytestmark = pytest.mark.django_db


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_agent_submits_with_its_token(agent: ServiceAccount, client: Client) -> None:
    token, secret = create_token(service_account=agent, created_by="user:boss")
    response = client.post(
        "/api/v1/decisions/", rebalance(), content_type="application/json", headers=bearer(secret)
    )
    assert response.status_code == 201
    assert response.json()["requested_by"] == "agent:decision-runtime-cron"
    assert secret.split("_", 2)[2] not in token.secret_hash  # only a hash is stored
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_revoked_malformed_and_unknown_tokens_get_401(
    agent: ServiceAccount, client: Client
) -> None:
    token, secret = create_token(service_account=agent, created_by="user:boss")
    revoke_token(token)
    for header in (secret, "bst_nope", f"bst_{token.lookup}_wrong", "not-a-token"):
        response = client.get("/api/v1/decisions/", headers=bearer(header))
        assert response.status_code == 401, header


def test_token_of_one_org_cannot_touch_another(agent: ServiceAccount, client: Client) -> None:
    mine = client.post(
        "/api/v1/decisions/",
        rebalance(),
        content_type="application/json",
        headers=bearer(create_token(service_account=agent, created_by="x")[1]),
    ).json()
    other = Organization.objects.create(name="Other", slug="other")
    space = Workspace.objects.create(org=other, name="Default", slug="default")
    stranger = ServiceAccount.objects.create(org=other, workspace=space, name="stranger")
    _, secret = create_token(service_account=stranger, created_by="x")

    assert client.get(f"/api/v1/decisions/{mine['id']}/", headers=bearer(secret)).status_code == 404
    assert client.get("/api/v1/decisions/", headers=bearer(secret)).json()["entries"] == []
    submitted = client.post(
        "/api/v1/decisions/", rebalance(), content_type="application/json", headers=bearer(secret)
    ).json()
    assert submitted["id"] in [
        d["id"] for d in client.get("/api/v1/decisions/", headers=bearer(secret)).json()["entries"]
    ]
    assert submitted["policy_evaluation"]["outcome"] == "require_human"  # Other has no policy


def test_agent_token_cannot_approve(agent: ServiceAccount, client: Client) -> None:
    _, secret = create_token(service_account=agent, created_by="x")
    held = client.post(
        "/api/v1/decisions/",
        rebalance(amount=6000),
        content_type="application/json",
        headers=bearer(secret),
    ).json()
    response = client.post(
        f"/api/v1/runs/{held['run']['run_id']}/approve/",
        {},
        content_type="application/json",
        headers=bearer(secret),
    )
    assert response.status_code == 403


def test_admin_creates_a_token_shown_once_and_revokes_it(
    agent: ServiceAccount, client: Client, member: Any
) -> None:
    client.force_login(member("boss", Role.ADMIN))
    page = client.post("/tokens/", {"service_account": "decision-runtime-cron"}).content.decode()
    token = ApiToken.objects.get()
    shown = page.split('<pre id="new-token">')[1].split("</pre>")[0]
    assert shown.startswith(f"bst_{token.lookup}_")
    assert shown not in client.get("/tokens/").content.decode()

    client.post(f"/tokens/{token.id}/revoke/")
    assert client.get("/api/v1/decisions/", headers=bearer(shown)).status_code == 401


def test_only_admins_see_or_make_tokens(agent: ServiceAccount, client: Client, member: Any) -> None:
    client.force_login(member("ops", Role.OPERATOR))
    assert client.get("/tokens/").status_code == 403
    assert client.post("/tokens/", {"service_account": "decision-runtime-cron"}).status_code == 403
    assert not ApiToken.objects.exists()
