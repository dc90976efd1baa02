"""The decision list: statuses in words, amount, duration, relative times, drills hidden
unless asked, errors by label, empty states, constant queries."""

import re
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.devtools import sample_data as factories
from controlplane.drills.start import start_drill
from controlplane.models import Decision, Role, ServiceAccount
from controlplane.pages.amounts import amount_of, total_of
from runs.models import RunStatus, WorkflowRun
from tests.conftest import rebalance, submit

pytestmark = pytest.mark.django_db


@pytest.fixture
def viewer(client: Client, member: Any) -> Client:
    client.force_login(member("viewer", Role.VIEWER))
    return client


def row(html: str, decision_id: str) -> str:
    match = re.search(rf'<tr data-decision="{decision_id}">(.*?)</tr>', html, re.S)
    assert match, f"{decision_id} is not listed"
    return match.group(1)


def cell(row_html: str, testid: str) -> str:
    match = re.search(rf'data-testid="{testid}"[^>]*>(.*?)</(?:td|span)>', row_html, re.S)
    assert match, testid
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def listed(client: Client, **filters: str) -> list[str]:
    page = client.get("/decisions/", filters).content.decode()
    return re.findall(r'data-decision="([^"]+)"', page)


def drill(agent: ServiceAccount) -> str:
    """Start a real drill and return its decision's id."""
    started = start_drill(
        workspace=agent.workspace,
        workflow_id="execute_rebalance_spend",
        step_id="credit_target_channel",
        fault="fatal",
        started_by="user:ops",
    )
    return started.decision_id


def test_row_reads_as_words_with_amount_duration_and_relative_time(
    agent: ServiceAccount, viewer: Client
) -> None:
    [done] = factories.decisions(agent, 1)
    done.received_at = timezone.now() - timedelta(minutes=5, seconds=10)
    Decision.objects.filter(pk=done.pk).update(received_at=done.received_at)
    run = done.runs.get()
    WorkflowRun.objects.filter(pk=run.pk).update(
        status=RunStatus.COMPENSATION_FAILED, finished_at=run.created_at + timedelta(seconds=4.2)
    )
    held = submit(agent, rebalance(amount=6000))

    html = viewer.get("/decisions/").content.decode()
    first = row(html, done.id)
    assert 'class="badge badge-compensation_failed" data-testid="status"' in first
    assert cell(first, "status") == "Compensation failed"
    assert cell(first, "amount") == "USD 800.00/day"  # the seed's action: 800 USD, daily
    assert cell(first, "duration") == "4.2 s"
    received = re.search(r'data-testid="received"><time datetime="([^"]+)" title="([^"]+)">', first)
    assert received and received.group(1) == done.received_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert cell(first, "received") == "5 min ago"

    waiting = row(html, held.id)
    assert cell(waiting, "status") == "Awaiting approval"
    assert cell(waiting, "amount") == "USD 6,000.00/day"
    assert cell(waiting, "duration") == "—"  # a held run has not executed


def test_a_running_run_shows_its_time_so_far(agent: ServiceAccount, viewer: Client) -> None:
    [decision] = factories.decisions(agent, 1)
    WorkflowRun.objects.filter(decision=decision).update(
        status=RunStatus.RUNNING, created_at=timezone.now() - timedelta(minutes=3), finished_at=None
    )
    html = viewer.get("/decisions/").content.decode()
    assert cell(row(html, decision.id), "duration") == "3 min so far"


def test_drills_are_hidden_until_asked_for(agent: ServiceAccount, viewer: Client) -> None:
    [real] = factories.decisions(agent, 1)
    drilled = drill(agent)

    assert listed(viewer) == [real.id]
    assert listed(viewer, drills="include") == [drilled, real.id]
    assert listed(viewer, drills="only") == [drilled]
    shown = viewer.get("/decisions/", {"drills": "include"}).content.decode()
    assert 'class="badge badge-drill">Drill</span>' in row(shown, drilled)
    # The API lists the same way.
    api = viewer.get("/api/v1/decisions/").json()["entries"]
    assert [d["id"] for d in api] == [real.id]


def test_only_drills_leaves_an_empty_state_that_offers_them(
    agent: ServiceAccount, viewer: Client
) -> None:
    drill(agent)
    html = viewer.get("/decisions/").content.decode()
    empty = re.search(r'data-testid="empty">(.*?)</div>', html, re.S)
    assert empty and "No decision yet." in empty.group(1)
    assert "POST /api/v1/decisions/" in empty.group(1)
    assert 'href="?drills=include">show them too</a>' in empty.group(1)


def test_filters_matching_nothing_say_how_to_widen(agent: ServiceAccount, viewer: Client) -> None:
    factories.decisions(agent, 2)
    html = viewer.get("/decisions/", {"status": "expired"}).content.decode()
    empty = re.search(r'data-testid="empty">(.*?)</div>', html, re.S)
    assert empty and "No decision matches these filters." in empty.group(1)
    assert 'href="/decisions/">clear the filters</a>' in empty.group(1)


def test_form_errors_name_the_fields_label(viewer: Client) -> None:
    response = viewer.get(
        "/decisions/",
        {"received_from": "last tuesday", "received_to": "2026-01-01", "after": "zzz"},
    )
    assert response.status_code == 400
    found = re.search(r'data-testid="form-errors">(.*?)</div>', response.content.decode(), re.S)
    assert found
    errors = found.group(1)
    words = re.sub(r"<[^>]+>", "", errors)
    assert "From: Enter a valid date." in words
    assert "Page: Not a page cursor from this list; start from page one." in words
    assert "received_from" not in words and "after:" not in words
    assert 'href="#id_received_from"' in errors  # each error leads to its field
    # The API still names the field as it is sent.
    api = viewer.get("/api/v1/decisions/", {"received_from": "last tuesday"}).json()
    assert list(api["error"]["fields"]) == ["received_from"]


def test_list_queries_do_not_grow_with_any_kind_of_row(
    agent: ServiceAccount, viewer: Client
) -> None:
    def count(**filters: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert viewer.get("/decisions/", filters).status_code == 200
        return len(captured)

    factories.decisions(agent, 3)
    submit(agent, rebalance(amount=6000))
    drill(agent)
    few = count(), count(drills="include")
    factories.decisions(agent, 60)
    for _ in range(5):
        submit(agent, rebalance(amount=7000))
        drill(agent)
    assert (count(), count(drills="include")) == few


def test_amounts_read_as_money() -> None:
    assert amount_of({"amount": 800, "currency": "USD", "cadence": "daily"}) == "USD 800.00/day"
    assert amount_of({"amount": 1250.5, "currency": "CHF"}) == "CHF 1,250.50"
    assert amount_of({"amount": "-12.25", "currency": "EUR"}) == "EUR -12.25"
    assert amount_of({"amount": 5}) == "5.00"
    assert amount_of({"channel": "meta"}) == ""
    assert amount_of({"amount": "lots"}) == ""
    assert amount_of({"amount": True}) == ""
    assert (
        total_of(
            [
                {"amount": 6000, "currency": "USD", "cadence": "daily"},
                {"amount": 9000, "currency": "USD", "cadence": "daily"},
                {"amount": 200, "currency": "CHF", "cadence": "weekly"},
                {"channel": "meta"},
            ]
        )
        == "CHF 200.00/week + USD 15,000.00/day"
    )
