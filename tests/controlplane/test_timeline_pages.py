"""The decision and run pages read as a person needs them: times, durations, labels,
events by kind, errors said once, attempts counted across a retried rollback, and the
approval wait on the drawing."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from django.test import Client

from controlplane.devtools.demo import SEED_DECISION_ID
from controlplane.drills.start import start_drill
from controlplane.intake.approvals import decide_held_run
from controlplane.models import Fault, Membership, Role, ServiceAccount, Workspace
from mutations.models import RuntimeEvent, SandboxFault
from mutations.services import Surface
from runs.keys import compensation_key
from runs.models import RunStatus, WorkflowRun
from runs.rollback import retry_rollback
from tests.conftest import command, drain, load_fixture, submit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo(client: Client) -> Client:
    command("demo")
    command("runworkflows", until_idle=True)
    client.login(username="operator", password="backstop-demo")
    return client


def text_of(html: str) -> str:
    """Return what a person reads: no raw JSON blocks, no tags or their attributes."""
    html = re.sub(r"<pre[^>]*>.*?</pre>", "", html, flags=re.S)
    html = re.sub(r"<svg.*?</svg>", "", html, flags=re.S)
    return unescape(re.sub(r"<[^>]+>", " ", html))


def attempts_table(html: str) -> list[list[str]]:
    """Return the attempts table's rows as cell texts."""
    table = html.split('class="grid attempts-table"', 1)[1].split("</tbody>", 1)[0]
    rows = table.split("<tbody>", 1)[1].split("</tr>")[:-1]
    return [
        [
            " ".join(text_of(cell).split())
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)
        ]
        for r in rows
    ]


def test_the_seed_page_shows_one_time_format_and_labels_in_words(demo: Client) -> None:
    html = demo.get(f"/decisions/{SEED_DECISION_ID}/").content.decode()
    text = text_of(html)

    # Moments are relative, with the absolute time on hover; no ISO strings to read.
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", text)
    assert not re.search(r"\b\d\d:\d\d:\d\dZ\b", text)
    events = RuntimeEvent.objects.filter(decision_id=SEED_DECISION_ID).count()
    assert len(re.findall(r'<time datetime="[^"]+Z" title="[^"]+ UTC">', html)) >= events
    # Statuses in words.
    assert ">Compensated</span>" in html
    assert ">Rolled back</span>" in html
    assert "rolled_back</span>" not in html
    # Durations: the run's, and each attempt's.
    run = WorkflowRun.objects.get(decision_id=SEED_DECISION_ID)
    duration = html.split('data-testid="run-duration">', 1)[1].split("</dd>", 1)[0]
    assert re.fullmatch(r"\d+(\.\d)? (ms|s)", duration)
    assert run.finished_at is not None
    rows = attempts_table(html)
    assert [(r[0], r[2], r[5]) for r in rows] == [
        ("debit_source_channel", "1", "Succeeded"),
        ("credit_target_channel", "1", "Failed, tried again"),
        ("credit_target_channel", "2", "Failed, tried again"),
        ("credit_target_channel", "3", "Failed"),
        ("credit_source_channel", "1", "Succeeded"),
    ]
    # The 429 is said once; the attempts that repeat it say so.
    assert [r[6] for r in rows[1:4]] == [
        "google_ads_api: rate_limit_exceeded (code 429, retry_after=120s)",
        "same as attempt 1",
        "same as attempt 1",
    ]


def test_the_run_page_says_a_repeated_error_once_with_its_count(demo: Client) -> None:
    run = WorkflowRun.objects.get(decision_id=SEED_DECISION_ID)
    html = demo.get(f"/runs/{run.run_id}/").content.decode()

    steps = html.split('id="steps-h"', 1)[1].split("</table>", 1)[0]
    assert steps.count("rate_limit_exceeded") == 1
    group = steps.split('class="error error-group">', 1)[1].split("</div>", 1)[0]
    group = " ".join(text_of(group).split())
    assert group.startswith("3 \u00d7 google_ads_api: rate_limit_exceeded")
    assert group.endswith("(attempts #1\u2013#3)")
    # The evidence reads as facts, not JSON; the record is still one click away.
    evidence = html.split('id="evidence-h"', 1)[1]
    assert "<pre>" not in evidence
    assert "Downstream step failure" in evidence
    assert f'href="/runs/{run.run_id}/evidence.json" download' in evidence


def test_events_filter_by_kind_with_a_count_per_kind(demo: Client) -> None:
    url = f"/decisions/{SEED_DECISION_ID}/"
    html = demo.get(url).content.decode()
    kinds = dict(
        re.findall(r'id="kind-([a-z_]+)"[^>]*>[^<]+<span class="kind-count">(\d+)</span>', html)
    )
    stored = RuntimeEvent.objects.filter(decision_id=SEED_DECISION_ID)
    assert kinds.pop("all") == str(stored.count())
    assert kinds == {
        kind: str(stored.filter(kind=kind).count())
        for kind in stored.values_list("kind", flat=True).distinct()
    }

    # Without JavaScript: a link with the kind in the query.
    filtered = demo.get(url, {"kind": "step_retry_scheduled"}).content.decode()
    listed = re.findall(r'<li data-kind="([a-z_]+)"', filtered)
    assert listed == ["step_retry_scheduled", "step_retry_scheduled"]
    # With htmx: the same list, swapped in place (the page's fragment only).
    partial = demo.get(url, {"kind": "step_retry_scheduled"}, headers={"HX-Request": "true"})
    assert b"<html" not in partial.content
    assert (
        re.findall(rb'<li data-kind="([a-z_]+)"', partial.content) == [b"step_retry_scheduled"] * 2
    )
    # An unknown kind shows them all.
    every = demo.get(url, {"kind": "nonsense"}).content.decode()
    assert len(re.findall(r'<li data-kind="', every)) == stored.count()


def test_a_held_run_started_when_it_was_approved_and_the_wait_is_drawn(
    agent: ServiceAccount, client: Client, member: Any
) -> None:
    document = {
        **load_fixture("seed_decision.json"),
        "id": "dec_01J1B7K9C8N3RXQK9VPYZW6000",
        "action": {**load_fixture("seed_decision.json")["action"], "amount": 6000},
    }
    decision = submit(agent, document)
    run = WorkflowRun.objects.get(decision=decision)
    assert run.status == RunStatus.AWAITING_APPROVAL
    approver = member("dana", Role.APPROVER)
    decide_held_run(
        membership=Membership.objects.get(user=approver),
        user=approver,
        run=run,
        approve=True,
        comment="launch week",
        surface=Surface.DASHBOARD,
    )
    drain()
    run.refresh_from_db()
    started = RuntimeEvent.objects.get(run=run, kind=RuntimeEvent.Kind.RUN_STARTED).timestamp
    assert started > run.created_at
    client.force_login(approver)

    html = client.get(f"/decisions/{decision.id}/").content.decode()

    cell = html.split('data-testid="run-started">', 1)[1].split("</dd>", 1)[0]
    assert f'datetime="{started.strftime("%Y-%m-%dT%H:%M:%SZ")}"' in cell
    approval = html.split('class="tl-bar tl-approval"', 1)[1].split(">", 1)[0]
    assert 'aria-label="Approval: approved by dana after ' in approval
    assert "approved by dana after " in text_of(html.split('class="tl-approval-label"', 1)[1])
    assert 'data-testid="approval"' in html


def test_attempts_go_on_counting_after_a_person_retries_the_rollback(
    workspace: Workspace, client: Client, member: Any
) -> None:
    drill = start_drill(
        workspace=workspace,
        workflow_id="execute_rebalance_spend",
        step_id="credit_target_channel",
        fault=Fault.COMPENSATION_FAILS,
        started_by="user:ops",
    )
    drain()
    run = WorkflowRun.objects.get(pk=drill.run_id)
    assert run.status == RunStatus.COMPENSATION_FAILED
    first_round = run.steps.get(kind="compensation").attempts
    SandboxFault.objects.filter(
        key_prefix=compensation_key(run.idempotency_key, "debit_source_channel")
    ).delete()  # the platform recovered
    retry_rollback(
        run_id=run.run_id, org_id=run.org_id, requested_by="user:ops", surface=Surface.DASHBOARD
    )
    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPENSATED
    client.force_login(member("ops", Role.OPERATOR))

    html = client.get(f"/runs/{run.run_id}/").content.decode()

    undo = [r for r in attempts_table(html) if r[0] == "credit_source_channel"]
    assert first_round > 1
    assert [(r[2], r[5]) for r in undo] == [
        *[(str(n), "Failed, tried again") for n in range(1, first_round)],
        (str(first_round), "Failed"),  # the runner gave up; a person retried
        (str(first_round + 1), "Succeeded"),  # not "attempt 1" again
    ]
    steps = html.split('id="steps-h"', 1)[1].split("</table>", 1)[0]
    row = steps.split("<code>credit_source_channel</code>", 1)[1].split("</tr>", 1)[0]
    assert f'<td class="num">{first_round + 1}</td>' in row
    assert "net change: zero" in html
