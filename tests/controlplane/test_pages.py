"""The decision list and timeline pages."""

import re
from typing import Any

import pytest
from django.test import Client

from controlplane.devtools.demo import SEED_DECISION_ID
from controlplane.models import Organization, Role, Workspace
from mutations.models import Mutation
from runs.models import WorkflowRun
from tests.conftest import command

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo(client: Client) -> Client:
    command("demo")
    command("runworkflows", until_idle=True)
    client.login(username="operator", password="backstop-demo")
    return client


def test_pages_need_a_login(client: Client) -> None:
    response = client.get("/decisions/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_list_shows_each_decision_with_its_status(demo: Client) -> None:
    html = demo.get("/decisions/").content.decode()
    assert "Shift $800/day from Meta to Google on rising search-intent signal" in html
    assert f'href="/decisions/{SEED_DECISION_ID}/"' in html
    for status in ("compensated", "completed", "denied", "awaiting_approval"):
        assert f"badge-{status}" in html
    assert "agent:decision-runtime-cron" in html


def test_timeline_shows_three_rows_the_link_and_equal_hashes(demo: Client) -> None:
    html = demo.get(f"/decisions/{SEED_DECISION_ID}/").content.decode()
    debit, _, undo = Mutation.objects.filter(decision_id=SEED_DECISION_ID)
    run = WorkflowRun.objects.get(decision_id=SEED_DECISION_ID)

    assert html.count('class="mutation status-') == 3
    deltas = re.findall(r'<span class="delta">([^<]+)</span>', html)
    assert deltas == ["\u2212$800/day", "+$800/day", "+$800/day"]
    assert f'Reverses <a href="#{debit.mutation_id}">#1 debit_source_channel</a>' in html
    assert f'Reversed by <a href="#{undo.mutation_id}">#3 credit_source_channel</a>' in html
    assert "rate_limit_exceeded" in html
    assert html.count(run.before_state_hash or "missing") == 2  # before and after, equal
    assert "net change: zero" in html


def test_denied_decision_page_names_the_rule(demo: Client) -> None:
    html = demo.get("/decisions/dec_01J1B8B3N5R7T9V1X3Z5B7D9F1/").content.decode()
    assert "Denied by deny-low-confidence" in html
    assert "No mutation" in html


def test_polling_stops_once_the_run_is_terminal(demo: Client) -> None:
    response = demo.get(f"/decisions/{SEED_DECISION_ID}/", headers={"HX-Request": "true"})
    assert response.status_code == 286
    assert b"<html" not in response.content
    assert b"net change: zero" in response.content


def test_another_orgs_user_gets_404(demo: Client, django_user_model: Any) -> None:
    other = Organization.objects.create(name="Other", slug="other")
    Workspace.objects.create(org=other, name="Default", slug="default")
    outsider = django_user_model.objects.create_user(username="outsider", password="pw")
    other.memberships.create(user=outsider, role=Role.ADMIN)
    demo.force_login(outsider)

    assert demo.get(f"/decisions/{SEED_DECISION_ID}/").status_code == 404
    assert SEED_DECISION_ID not in demo.get("/decisions/").content.decode()
