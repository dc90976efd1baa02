"""The dashboard's list and timeline: filters, pages, constant queries, tenancy."""

import json
import re
from html import unescape
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from controlplane.devtools import sample_data as factories
from controlplane.models import Organization, Role, ServiceAccount, Workspace
from tests.conftest import command

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(client: Client, member: Any) -> Client:
    client.force_login(member("viewer", Role.VIEWER))
    return client


def queries(client: Client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured)


def test_timeline_queries_do_not_grow_with_mutations(agent: ServiceAccount, viewer: Client) -> None:
    small, large = factories.decisions(agent, 2)
    factories.mutations(small, 5)
    factories.mutations(large, 500)

    assert queries(viewer, f"/decisions/{small.id}/") == queries(viewer, f"/decisions/{large.id}/")


def test_list_queries_do_not_grow_with_decisions(agent: ServiceAccount, viewer: Client) -> None:
    factories.decisions(agent, 10)
    ten = queries(viewer, "/decisions/")
    factories.decisions(agent, 990)
    assert queries(viewer, "/decisions/") == ten


def test_keyset_pages_walk_every_decision_once(agent: ServiceAccount, viewer: Client) -> None:
    made = factories.decisions(agent, 120)
    seen: list[str] = []
    url: str | None = "/decisions/"
    while url:
        html = viewer.get(url).content.decode()
        seen += re.findall(r'data-decision="([^"]+)"', html)
        following = re.search(r'href="(\?[^"]*)" rel="next"', html)
        url = "/decisions/" + unescape(following.group(1)) if following else None
    assert seen == [d.id for d in reversed(made)]


def test_filters_narrow_the_list(agent: ServiceAccount, viewer: Client) -> None:
    rebalances = factories.decisions(agent, 3)
    google_budgets = factories.decisions(
        agent,
        2,
        type="adjust_budget",
        action={
            "type": "adjust_budget",
            "channel": "google",
            "amount": 100,
            "currency": "USD",
            "cadence": "daily",
            "scope": {"market": "all"},
        },
    )

    def shown(**filters: str) -> list[str]:
        page = viewer.get("/decisions/", filters).content.decode()
        return re.findall(r'data-decision="([^"]+)"', page)

    assert shown(q=rebalances[1].id) == [rebalances[1].id]
    assert sorted(shown(type="adjust_budget")) == sorted(d.id for d in google_budgets)
    assert sorted(shown(platform="meta")) == sorted(d.id for d in rebalances)
    assert len(shown(platform="google")) == 5
    assert len(shown(status="completed", type="rebalance_spend")) == 3
    assert shown(status="compensated") == []
    assert shown(drills="only") == []


def test_bad_filter_is_refused_with_the_field_named(viewer: Client) -> None:
    response = viewer.get("/decisions/", {"received_from": "last tuesday", "after": "zzz"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "received_from" in html and "after" in html


def test_raw_json_on_the_page_equals_the_api(agent: ServiceAccount, viewer: Client) -> None:
    [decision] = factories.decisions(agent, 1)
    factories.mutations(decision, 3)
    html = viewer.get(f"/decisions/{decision.id}/").content.decode()
    raw = html.split('id="raw-mutations"')[1].split(">", 1)[1].split("</pre>")[0]
    api = viewer.get(f"/api/v1/mutations/?decision_id={decision.id}").json()
    assert json.loads(unescape(raw)) == api
    assert html.count('class="tl-undo"') == 3  # one arrow per compensation
    assert html.count('class="tl-bar tl-succeeded') == 6  # one bar per attempt


def test_every_page_of_another_org_is_not_found(
    agent: ServiceAccount, client: Client, django_user_model: Any
) -> None:
    [decision] = factories.decisions(agent, 1)
    run = decision.runs.get()
    other = Organization.objects.create(name="Other", slug="other")
    Workspace.objects.create(org=other, name="Default", slug="default")
    outsider = django_user_model.objects.create_user(username="outsider", password="pw")
    other.memberships.create(user=outsider, role=Role.ADMIN)
    client.force_login(outsider)

    for url in (
        f"/decisions/{decision.id}/",
        f"/runs/{run.run_id}/",
        f"/runs/{run.run_id}/evidence.json",
        f"/api/v1/decisions/{decision.id}/",
        f"/api/v1/runs/{run.run_id}/",
        f"/api/v1/runs/{run.run_id}/evidence/",
    ):
        assert client.get(url).status_code == 404, url
    assert client.post(f"/runs/{run.run_id}/rollback/").status_code == 404
    assert client.post(f"/api/v1/runs/{run.run_id}/rollback/").status_code == 404
    for url in ("/decisions/", "/approvals/", "/drills/", "/policies/"):
        assert decision.id not in client.get(url).content.decode(), url
    # Choosing another org's id in the switcher is refused too.
    assert client.post("/org/", {"org_id": agent.org_id}).status_code == 404


def test_org_switcher_changes_what_the_pages_show(
    agent: ServiceAccount, client: Client, django_user_model: Any
) -> None:
    [decision] = factories.decisions(agent, 1)
    other = Organization.objects.create(name="Zeta", slug="zeta")
    Workspace.objects.create(org=other, name="Default", slug="default")
    user = django_user_model.objects.create_user(username="both", password="pw")
    other.memberships.create(user=user, role=Role.VIEWER)
    agent.org.memberships.create(user=user, role=Role.VIEWER)
    client.force_login(user)

    assert decision.id in client.get("/decisions/").content.decode()
    client.post("/org/", {"org_id": other.id})
    assert decision.id not in client.get("/decisions/").content.decode()
    assert client.get(f"/decisions/{decision.id}/").status_code == 404


def test_evidence_downloads_as_json(agent: ServiceAccount, viewer: Client) -> None:
    [decision] = factories.decisions(agent, 1)
    run = decision.runs.get()
    response = viewer.get(f"/runs/{run.run_id}/evidence.json")
    assert response["Content-Disposition"] == f'attachment; filename="{run.run_id}-evidence.json"'
    assert json.loads(response.content)["run_id"] == run.run_id


@pytest.mark.django_db(transaction=True)
def test_drift_is_shown_in_red_when_a_compensated_run_did_not_restore_the_state(
    client: Client,
) -> None:
    command("demo")
    command("runworkflows", until_idle=True)
    from runs.models import WorkflowRun

    WorkflowRun.objects.filter(status="compensated").update(after_state_hash="h_000000000000")
    client.login(username="operator", password="backstop-demo")
    html = client.get("/decisions/dec_01J1B7K9C8N3RXQK9VPYZW2QF4/").content.decode()
    assert 'class="drift" role="alert"' in html
    assert "net change: zero" not in html


def test_only_operators_and_admins_retry_a_rollback(
    agent: ServiceAccount, client: Client, member: Any
) -> None:
    [decision] = factories.decisions(agent, 1)
    run = decision.runs.get()
    for role in (Role.VIEWER, Role.APPROVER):
        client.force_login(member(f"someone-{role}", role))
        assert client.post(f"/api/v1/runs/{run.run_id}/rollback/").status_code == 403
        assert client.post(f"/runs/{run.run_id}/rollback/").status_code == 403
    client.force_login(member("ops", Role.OPERATOR))
    refused = client.post(f"/api/v1/runs/{run.run_id}/rollback/")
    assert refused.status_code == 409  # allowed to ask; a completed run has nothing to retry
    assert "only a compensation_failed run" in refused.json()["error"]["message"]
