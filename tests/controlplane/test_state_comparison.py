"""The state comparison on the timeline and run pages: the values the state hashes prove,
before and after a run (or now, while it runs), with the values in between."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from controlplane.devtools.demo import SEED_DECISION_ID
from controlplane.drills.start import start_drill
from controlplane.models import Drill, Fault, Role, ServiceAccount, Workspace
from mutations.hashing import snapshot_scope, state_hash
from mutations.models import SandboxCampaign, SandboxFault
from runs.keys import step_calls_prefix
from runs.models import RunStatus, WorkflowRun
from runs.runner import Worker
from tests.conftest import command, drain, first_run_key, load_fixture, submit
from tests.platforms import Platforms

pytestmark = pytest.mark.django_db(transaction=True)

BUDGET = "daily_budget_micros"


def field_row(html: str, obj: str, name: str) -> str:
    """Return the table row of one field of one platform object in the state comparison."""
    section = html.split(f'data-object="{obj}"', 1)[1].split("</table>", 1)[0]
    return section.split(f'data-field="{name}"', 1)[1].split("</tr>", 1)[0]


def row_class(html: str, obj: str, name: str) -> str:
    section = html.split(f'data-object="{obj}"', 1)[1].split("</table>", 1)[0]
    match = re.search(rf'<tr class="([^"]*)" data-field="{name}"', section)
    assert match, f"no row for {name} of {obj}"
    return match.group(1)


def values(row: str, cell: str) -> list[str]:
    """Return the machine-readable values of a cell of a field's row (``before``, ``after``
    or ``path``)."""
    if cell == "path":
        part = row.split('<ol class="state-path"', 1)[1].split("</ol>", 1)[0]
    else:
        part = row.split(f'data-testid="{cell}"', 1)[1].split("</td>", 1)[0]
    return re.findall(r'<data value="([^"]*)">', part)


@pytest.fixture
def operator(client: Client, member: Any) -> Client:
    client.force_login(member("ops", Role.OPERATOR))
    return client


def test_seed_timeline_shows_the_meta_budget_before_after_the_debit_and_after_the_undo(
    client: Client,
) -> None:
    command("demo")
    seed = WorkflowRun.objects.get(decision_id=SEED_DECISION_ID)
    meta = SandboxCampaign.objects.get(org_id=seed.org_id, platform="meta")
    before = meta.daily_budget_micros
    before_hash = state_hash(snapshot_scope(org_id=seed.org_id, scope=seed.scope))
    debit = int(seed.input["action"]["amount"]) * 1_000_000
    command("runworkflows", until_idle=True)
    client.login(username="operator", password="backstop-demo")

    html = client.get(f"/decisions/{SEED_DECISION_ID}/").content.decode()

    row = field_row(html, f"meta:{meta.campaign_id}", BUDGET)
    # Before, after the debit, after the compensation: as the sandbox held them.
    assert values(row, "path") == [str(before), str(before - debit), str(before)]
    assert values(row, "before") == values(row, "after") == [str(before)]
    assert "$20,000.00" in row and "$19,200.00" in row
    assert row_class(html, f"meta:{meta.campaign_id}", BUDGET) == "changed"
    # Google's budget never moved: its credit failed.
    google = SandboxCampaign.objects.get(org_id=seed.org_id, platform="google")
    google_row = field_row(html, f"google:{google.campaign_id}", BUDGET)
    assert "unchanged" in google_row
    # The hashes beneath are the proof: equal, and those of the sandbox before the run.
    seed.refresh_from_db()
    assert seed.before_state_hash == seed.after_state_hash == before_hash
    state = html.split('data-testid="state-comparison"', 1)[1]
    assert state.count(before_hash) == 2
    assert "net change: zero" in state
    # The next run on the same campaigns started where the seed left them.
    completed = WorkflowRun.objects.get(decision_id="dec_01J1B8A2M4Q6S8U0W2Y4A6C8E0")
    assert completed.before_state == seed.after_state


def test_a_half_compensation_shows_the_drifting_field_in_red(
    workspace: Workspace, operator: Client
) -> None:
    drill = start_drill(
        workspace=workspace,
        workflow_id="execute_rebalance_spend",
        step_id="credit_target_channel",
        fault=Fault.COMPENSATION_FAILS,
        started_by="user:ops",
    )
    drain()
    drill = Drill.objects.select_related("run").get(pk=drill.pk)
    run = drill.run
    assert run is not None and run.status == RunStatus.COMPENSATION_FAILED
    market = run.input["action"]["scope"]["market"]
    meta = SandboxCampaign.objects.get(org_id=run.org_id, platform="meta", market=market)
    debit = int(run.input["action"]["amount"]) * 1_000_000

    html = client_page(operator, f"/decisions/{run.decision_id}/")

    obj = f"meta:{meta.campaign_id}"
    assert row_class(html, obj, BUDGET) == "drift-field"
    row = field_row(html, obj, BUDGET)
    before = meta.daily_budget_micros + debit  # the undo never came
    assert values(row, "before") == [str(before)]
    assert values(row, "after") == [str(meta.daily_budget_micros)]
    drift = html.split('data-testid="drift"', 1)[1].split("</div>", 1)[0]
    assert f"daily budget of {meta.campaign_id} (meta) is " in unescape(drift)
    assert "\u2212$800.00" in unescape(drift)
    # Only the field that differs is red; the other campaign is untouched.
    assert row_class(html, obj, "status") == ""
    google = SandboxCampaign.objects.get(org_id=run.org_id, platform="google", market=market)
    assert row_class(html, f"google:{google.campaign_id}", BUDGET) == ""
    assert "net change: zero" not in html


def client_page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200
    return str(response.content.decode())


def test_kept_snapshots_hash_to_the_kept_hashes(
    workspace: Workspace, agent: ServiceAccount
) -> None:
    for amount in (100, 200):
        submit(agent, {**load_fixture("seed_decision.json"), "id": new_decision_id(amount)})
    drill = start_drill(
        workspace=workspace,
        workflow_id="execute_rebalance_spend",
        step_id="credit_target_channel",
        fault=Fault.COMPENSATION_FAILS,
        started_by="user:ops",
    )
    drain()

    runs = list(WorkflowRun.objects.all())
    assert len(runs) == 3 and drill.run_id in {r.run_id for r in runs}
    for run in runs:
        assert run.before_state is not None and run.after_state is not None
        assert state_hash(run.before_state) == run.before_state_hash
        assert state_hash(run.after_state) == run.after_state_hash


def new_decision_id(n: int) -> str:
    return f"dec_01J1B7K9C8N3RXQK9VPYZW{n:04d}"


def test_an_http_run_keeps_the_snapshots_read_by_calls(
    workspace: Workspace, platforms: Platforms, operator: Client
) -> None:
    drill = start_drill(
        workspace=workspace,
        workflow_id="grant_access",
        step_id="reserve_billing_seat",
        fault=Fault.FATAL,
        started_by="user:ops",
    )
    drain()
    run = WorkflowRun.objects.get(pk=drill.run_id)
    assert run.status == RunStatus.COMPENSATED
    assert run.before_state is not None and run.after_state is not None
    assert state_hash(run.before_state) == run.before_state_hash
    assert state_hash(run.after_state) == run.after_state_hash
    group = run.input["action"]["group"]
    user = run.input["action"]["user"]
    assert run.before_state["iam"] == {"members": []} == run.after_state["iam"]

    html = client_page(operator, f"/runs/{run.run_id}/")

    row = field_row(html, f"iam:group={group}", "members")
    path = re.findall(r"<data [^>]*>([^<]*)</data>", row.split('class="state-path"', 1)[1])
    assert path == ["none", user, "none"]  # added, then removed by the compensation
    assert "net change: zero" in html


def test_a_running_run_shows_its_state_before_and_now_without_writing(
    agent: ServiceAccount, operator: Client, settings: Any
) -> None:
    settings.BACKSTOP_RETRY_DELAY_SCALE = 1  # the credit waits for its retry
    document = {**load_fixture("seed_decision.json"), "id": new_decision_id(7)}
    SandboxFault.objects.create(
        org=agent.org,
        platform="google",
        kind=SandboxFault.Kind.TRANSIENT,
        remaining=1,
        key_prefix=step_calls_prefix(first_run_key(document), "credit_target_channel"),
    )
    decision = submit(agent, document)
    Worker().run(once=True)  # the debit applies, the credit fails once and waits
    run = WorkflowRun.objects.get(decision=decision)
    assert run.status == RunStatus.RUNNING
    meta = SandboxCampaign.objects.get(org=agent.org, platform="meta")
    debit = int(document["action"]["amount"]) * 1_000_000

    with CaptureQueriesContext(connection) as queries:
        html = client_page(operator, f"/runs/{run.run_id}/")
    writes = [q["sql"] for q in queries if not q["sql"].lstrip().upper().startswith("SELECT")]
    assert [w for w in writes if "runs_" in w or "mutations_" in w] == []

    row = field_row(html, f"meta:{meta.campaign_id}", BUDGET)
    assert values(row, "before") == [str(meta.daily_budget_micros + debit)]
    assert values(row, "after") == [str(meta.daily_budget_micros)]  # "now"
    assert '<th scope="col">Now</th>' in html
    assert "Changed so far" in html
    assert 'hx-trigger="every 1s"' in html  # it updates itself while live
    partial = operator.get(f"/runs/{run.run_id}/", headers={"HX-Request": "true"})
    assert partial.status_code == 200 and b"<html" not in partial.content

    drain()
    run.refresh_from_db()
    assert run.status == RunStatus.COMPLETED
    done = operator.get(f"/runs/{run.run_id}/", headers={"HX-Request": "true"})
    assert done.status_code == 286  # htmx stops polling
    assert b"every 1s" not in done.content


def test_a_platform_that_cannot_be_read_is_said_on_the_page(
    workspace: Workspace, platforms: Platforms, operator: Client, settings: Any
) -> None:
    settings.BACKSTOP_RETRY_DELAY_SCALE = 1  # the seat's rate limit holds the run running
    drill = start_drill(
        workspace=workspace,
        workflow_id="grant_access",
        step_id="reserve_billing_seat",
        fault=Fault.RATE_LIMIT,
        started_by="user:ops",
    )
    Worker().run(once=True)
    run = WorkflowRun.objects.get(pk=drill.run_id)
    assert run.status == RunStatus.RUNNING
    platforms.stop()

    html = client_page(operator, f"/runs/{run.run_id}/")

    assert "The platforms&#x27; current state could not be read" in html
    assert f"<code>{run.before_state_hash}</code>" in html  # the record's before-state
    group = run.input["action"]["group"]
    row = field_row(html, f"iam:group={group}", "members")
    assert values(row, "before") == ["[]"]
    assert ">not read</data>" in row  # now: unknown, not shown as the values before


def test_a_run_from_before_snapshots_were_kept_shows_its_hashes_only(
    agent: ServiceAccount, operator: Client
) -> None:
    decision = submit(agent, {**load_fixture("seed_decision.json"), "id": new_decision_id(8)})
    drain()
    run = WorkflowRun.objects.get(decision=decision)
    # As the runs recorded before the snapshots were kept: hashes, no values.
    WorkflowRun.objects.filter(pk=run.pk).update(before_state=None, after_state=None)

    html = client_page(operator, f"/decisions/{decision.id}/")

    state = html.split('data-testid="state-comparison"', 1)[1]
    assert "The values of this run's state were not kept" in unescape(state)
    assert "data-object=" not in state
    assert f"<code>{run.before_state_hash}</code>" in state
    assert f"<code>{run.after_state_hash}</code>" in state
