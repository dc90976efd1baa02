"""Error pages: 403 names the role needed (the API's too), 404 keeps other orgs' objects
unknown, 405 says how an action's address is used, 500 keeps the navigation."""

import re
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path

from controlplane import urls as project_urls
from controlplane.devtools import sample_data as factories
from controlplane.models import Organization, Role, ServiceAccount, Workspace
from tests.conftest import rebalance, submit

pytestmark = pytest.mark.django_db

NAVIGATION = '<nav aria-label="Main">'


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a view")


# This module doubles as a URLconf for the 500 test: the project's routes and handlers,
# and one route that fails.
urlpatterns = [*project_urls.urlpatterns, path("boom/", boom)]
handler403 = project_urls.handler403
handler404 = project_urls.handler404
handler500 = project_urls.handler500


def text(response: Any) -> str:
    """Return a page's words without tags, whitespace folded, as a person reads them."""
    words = re.sub(r"<[^>]+>", " ", response.content.decode())
    return re.sub(r"\s+", " ", words)


@pytest.fixture
def as_member(client: Client, member: Any) -> Any:
    def log_in(role: str) -> Client:
        client.force_login(member(f"a-{role}", role))
        return client

    return log_in


def test_viewer_starting_a_drill_is_told_the_role_needed(as_member: Any) -> None:
    response = as_member(Role.VIEWER).post(
        "/drills/start/", {"target": "execute_rebalance_spend:credit_target_channel"}
    )
    assert response.status_code == 403
    assert NAVIGATION in response.content.decode()
    page = text(response)
    assert "This needs the operator role" in page
    assert "Only an operator or an admin may start drills." in page
    assert "Your role in Acme is viewer" in page


def test_tokens_page_names_the_admin_role(as_member: Any) -> None:
    response = as_member(Role.OPERATOR).get("/tokens/")
    assert response.status_code == 403
    assert NAVIGATION in response.content.decode()
    assert "This needs the admin role" in text(response)
    assert "Your role in Acme is operator" in text(response)


def test_operator_rejecting_a_held_run_is_told_it_takes_an_approver(
    agent: ServiceAccount, as_member: Any
) -> None:
    held = submit(agent, rebalance(amount=6000)).runs.get()
    response = as_member(Role.OPERATOR).post(f"/runs/{held.run_id}/reject/")
    assert response.status_code == 403
    assert "approvers" in text(response)
    assert NAVIGATION in response.content.decode()


def test_api_refusals_name_the_role_needed(agent: ServiceAccount, as_member: Any) -> None:
    held = submit(agent, rebalance(amount=6000)).runs.get()
    client = as_member(Role.VIEWER)
    refusals = {
        "operator": client.post("/api/v1/decisions/", rebalance(), content_type="application/json"),
        "admin": client.post(
            "/api/v1/policies/", {"text": "version: x"}, content_type="application/json"
        ),
        "approver": client.post(
            f"/api/v1/runs/{held.run_id}/approve/", {}, content_type="application/json"
        ),
    }
    for role, response in refusals.items():
        assert response.status_code == 403, role
        error = response.json()["error"]
        assert error["code"] == "permission_denied"
        assert role in error["message"], error
    message = refusals["operator"].json()["error"]["message"]
    assert message == (
        "Only an operator, an admin or an agent may submit decisions; your role is viewer. "
        "Ask an admin of the organization for the operator role."
    )


def test_another_orgs_id_is_the_same_404_as_an_unknown_one(
    agent: ServiceAccount, client: Client, django_user_model: Any
) -> None:
    [decision] = factories.decisions(agent, 1)
    other = Organization.objects.create(name="Other", slug="other")
    Workspace.objects.create(org=other, name="Default", slug="default")
    outsider = django_user_model.objects.create_user(username="outsider", password="pw")
    other.memberships.create(user=outsider, role=Role.ADMIN)
    client.force_login(outsider)
    unknown = "dec_" + "0" * 26

    theirs = client.get(f"/decisions/{decision.id}/")
    nothing = client.get(f"/decisions/{unknown}/")
    assert theirs.status_code == nothing.status_code == 404
    assert NAVIGATION in theirs.content.decode()
    assert "Nothing here" in text(theirs)
    # The same page, word for word: nothing says the first one exists.
    assert text(theirs) == text(nothing)
    assert decision.id not in theirs.content.decode()


def test_unknown_address_is_a_branded_404(as_member: Any) -> None:
    response = as_member(Role.VIEWER).get("/no/such/page/")
    assert response.status_code == 404
    assert NAVIGATION in response.content.decode()
    assert "There is no page at this address, or what it names is not in Acme" in text(response)


@pytest.mark.parametrize(
    ("address", "where"),
    [
        ("/runs/{run}/approve/", 'href="/approvals/"'),
        ("/runs/{run}/reject/", 'href="/approvals/"'),
        ("/runs/{run}/rollback/", 'href="/runs/{run}/"'),
        ("/tokens/{token}/revoke/", 'href="/tokens/"'),
        ("/drills/start/", 'href="/drills/"'),
    ],
)
def test_opening_an_action_address_explains_it_takes_post(
    agent: ServiceAccount, as_member: Any, address: str, where: str
) -> None:
    from controlplane.access.tokens import create_token

    run = submit(agent, rebalance(amount=6000)).runs.get()
    token, _ = create_token(service_account=agent, created_by="user:boss")
    names = {"run": run.run_id, "token": token.pk}
    response = as_member(Role.ADMIN).get(address.format(**names))
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    html = response.content.decode()
    assert NAVIGATION in html
    assert "This address takes POST only" in text(response)
    assert where.format(**names) in html


def test_api_405_keeps_its_json_body(as_member: Any) -> None:
    response = as_member(Role.ADMIN).get("/api/v1/runs/wf_" + "0" * 26 + "/approve/")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


@pytest.mark.urls("tests.controlplane.test_error_pages")
def test_server_error_page_keeps_the_navigation(as_member: Any) -> None:
    client = as_member(Role.VIEWER)
    client.raise_request_exception = False
    response = client.get("/boom/")
    assert response.status_code == 500
    assert NAVIGATION in response.content.decode()
    assert "Something went wrong on our side" in text(response)
