"""The drills pages: the list updates itself while drills run, schedules and checks read as
text, a person's drill names the person, times are relative."""

import re
from typing import Any

import pytest
from django.test import Client

from controlplane.drills.verify import verify_finished_drills
from controlplane.models import Drill, Role, Workspace
from tests.conftest import drain

pytestmark = pytest.mark.django_db

HTMX = {"HX-Request": "true"}


@pytest.fixture
def ops(client: Client, member: Any, workspace: Workspace) -> Client:
    client.force_login(member("ops", Role.OPERATOR))
    return client


def start(client: Client, target: str, fault: str) -> Drill:
    response = client.post("/drills/start/", {"target": target, "fault": fault})
    assert response.status_code == 302
    return Drill.objects.get(pk=response["Location"].strip("/").split("/")[-1])


def words(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


def test_list_polls_while_a_drill_runs_and_stops_when_none_does(ops: Client) -> None:
    drill = start(ops, "execute_rebalance_spend:credit_target_channel", "rate_limit")

    page = ops.get("/drills/").content.decode()
    assert '<div id="drill-results" hx-get="/drills/" hx-trigger="every 2s"' in page
    polled = ops.get("/drills/", headers=HTMX)
    assert polled.status_code == 200
    fragment = polled.content.decode()
    assert fragment.lstrip().startswith('<div id="drill-results"')
    assert "<nav" not in fragment  # the fragment only, not the page
    assert f'data-drill="{drill.id}"' in fragment and ">running</a>" in fragment

    drain()
    verify_finished_drills()
    final = ops.get("/drills/", headers=HTMX)
    assert final.status_code == 286  # htmx swaps this last answer in and stops polling
    assert 'data-live="false"' in final.content.decode()
    assert "hx-trigger" not in final.content.decode()
    assert ">pass</a>" in final.content.decode()
    assert "hx-trigger" not in ops.get("/drills/").content.decode().split('id="drill-results"')[1]


def test_drill_started_by_a_person_names_them_with_relative_times(ops: Client) -> None:
    drill = start(ops, "execute_rebalance_spend:credit_target_channel", "fatal")

    for url in ("/drills/", f"/drills/{drill.id}/"):
        html = ops.get(url).content.decode()
        started = re.search(r'data-testid="started">(.*?)</(?:td|dd)>', html, re.S)
        assert started, url
        assert re.match(
            r'<time datetime="[0-9TZ:-]+" title="[^"]+ UTC">just now</time>', started[1]
        )
        assert words(started[1]).endswith("just now by ops"), url
        assert "user:ops" not in html and "actor: agent" not in html


def test_checks_read_as_sentences_not_python_lists(ops: Client) -> None:
    drill = start(ops, "execute_rebalance_spend:credit_target_channel", "rate_limit")
    drain()
    verify_finished_drills()
    drill.refresh_from_db()

    evidence = {c["name"]: c["evidence"] for c in drill.checks}
    assert evidence["one compensation per applied step, in reverse order"] == (
        "applied debit_source_channel; compensated debit_source_channel "
        "(expected debit_source_channel)"
    )
    keys = evidence["every idempotency key applied at most once"]
    assert keys.startswith("2 keys applied once each; 0 calls replayed. Keys: ")
    for text in evidence.values():
        assert "[" not in text and "'" not in text, text
    report = words(ops.get(f"/drills/{drill.id}/").content.decode())
    assert "✓ one compensation per applied step, in reverse order" in report
    assert "applied debit_source_channel; compensated debit_source_channel" in report


def test_weekly_schedule_reads_every_week(ops: Client) -> None:
    target = {"target": "execute_rebalance_spend:credit_target_channel", "fault": "fatal"}
    ops.post("/drills/schedule/", {**target, "every": "weekly"})
    ops.post("/drills/schedule/", {**target, "every": "daily"})

    plans = re.findall(r'data-testid="plan">(.*?)</li>', ops.get("/drills/").content.decode())
    assert [words(p) for p in plans] == [
        "execute_rebalance_spend · credit_target_channel (fatal 4xx), every day; next in 23 h",
        "execute_rebalance_spend · credit_target_channel (fatal 4xx), every week; next in 6 d",
    ]
    assert "604800" not in ops.get("/drills/").content.decode()


def test_forms_use_the_shared_button_styles(ops: Client) -> None:
    html = ops.get("/drills/").content.decode()
    assert '<button type="submit" class="primary">Start drill</button>' in html
    assert '<button type="submit">Drill everything</button>' in html


def test_viewer_reads_results_without_the_forms(client: Client, member: Any) -> None:
    client.force_login(member("watcher", Role.VIEWER))
    html = client.get("/drills/").content.decode()
    assert "Start drill" not in html
    assert "An operator or an admin starts them" in words(html)


def test_a_persons_drill_reads_as_theirs_on_its_timeline(ops: Client) -> None:
    drill = start(ops, "execute_rebalance_spend:credit_target_channel", "fatal")
    drain()
    drill.refresh_from_db()

    html = ops.get(f"/decisions/{drill.decision_id}/").content.decode()
    assert "actor: person" in words(html)
    assert "actor: agent" not in words(html)
