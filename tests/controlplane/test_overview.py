"""The overview (/): the organization's last 24 hours at a glance, in constant queries."""

import random
import re
import statistics
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from controlplane.devtools import sample_data
from controlplane.devtools.demo import SEED_DECISION_ID
from controlplane.drills.start import start_drill
from controlplane.models import (
    Decision,
    Drill,
    Organization,
    PolicyEvaluation,
    Role,
    ServiceAccount,
    Workspace,
)
from controlplane.pages import overview_chart
from controlplane.pages.overview_counts import SETTLE, hourly_counts
from controlplane.pages.overview_data import (
    ENDED,
    STATES,
    HourCount,
    drill_result,
    percentile,
    window_start,
)
from controlplane.templatetags.backstop import duration, label
from runs.keys import step_key
from runs.models import RunStatus, StepExecution, WorkflowRun
from tests.conftest import command, drain, plan_stuck_compensation, rebalance, submit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def demo(client: Client) -> Client:
    command("demo")
    command("runworkflows", until_idle=True)
    client.login(username="operator", password="backstop-demo")
    return client


def page(client: Client) -> str:
    response = client.get("/")
    assert response.status_code == 200
    return response.content.decode()


def shown(html: str, testid: str) -> str:
    """Return the text of the element marked ``data-testid=testid``."""
    found = re.search(rf'data-testid="{testid}">([^<]*)<', html)
    assert found, f"{testid} is not on the page"
    return found.group(1).strip()


def every_figure(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-testid="([^"]+)">([^<]*)<', html))


def section(html: str, testid: str) -> str:
    return html.split(f'data-testid="{testid}"', 1)[1].split("</section>", 1)[0]


def demo_org() -> Organization:
    return Organization.objects.get(slug="demo")


def stuck_compensation(agent: ServiceAccount, summary: str) -> WorkflowRun:
    """Submit a rebalance whose credit fails for good and whose compensation keeps failing."""
    document = rebalance()
    document["summary"] = summary
    plan_stuck_compensation(agent, document)
    decision = submit(agent, document)
    drain()
    return WorkflowRun.objects.get(decision=decision)


def test_anonymous_visitor_is_sent_to_log_in(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"


def test_logging_in_lands_on_the_overview(client: Client, member: Any) -> None:
    member("ops", Role.OPERATOR)
    response = client.post("/login/", {"username": "ops", "password": "pw"})
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_demo_counts_match_the_organizations_runs(demo: Client) -> None:
    html = page(demo)
    org = demo_org()
    real = WorkflowRun.objects.filter(org=org, is_drill=False)

    assert WorkflowRun.objects.get(decision_id=SEED_DECISION_ID).status == RunStatus.COMPENSATED
    for status in STATES:
        assert shown(html, f"state-{status}") == str(real.filter(status=status).count())
    assert int(shown(html, "state-compensated")) >= 1  # the seed decision's run
    held = real.filter(status=RunStatus.AWAITING_APPROVAL)
    assert shown(html, "held-count") == str(held.count()) != "0"
    outcomes = Counter(PolicyEvaluation.objects.filter(org=org).values_list("outcome", flat=True))
    for outcome in PolicyEvaluation.Outcome.values:
        assert shown(html, f"outcome-{outcome}") == str(outcomes[outcome])
    assert shown(html, "decisions-total") == str(Decision.objects.filter(org=org).count())
    ended = real.filter(status__in=ENDED).count()
    compensated = real.filter(status=RunStatus.COMPENSATED).count()
    assert f"{compensated} compensated of {ended} runs that ended" in html


def test_held_actions_show_the_money_at_stake_and_link_to_approvals(demo: Client) -> None:
    html = page(demo)
    held = Decision.objects.filter(runs__status=RunStatus.AWAITING_APPROVAL, org=demo_org())
    total = sum(Decimal(str(d.action["amount"])) for d in held)
    oldest = held.order_by("runs__created_at").first()
    assert oldest is not None

    assert shown(html, "at-stake") == f"USD {total:,.2f}/day"
    assert f'<a href="/decisions/{oldest.id}/">{oldest.summary}</a>' in html
    assert 'href="/approvals/"' in html


def test_step_latency_is_the_median_and_95th_percentile_of_forward_steps(demo: Client) -> None:
    html = page(demo)
    steps = StepExecution.objects.filter(
        org=demo_org(), kind=StepExecution.Kind.FORWARD, finished_at__isnull=False
    )
    seconds = [(s.finished_at - s.started_at).total_seconds() for s in steps]  # type: ignore[operator]
    assert seconds

    assert shown(html, "latency-p50") == duration(statistics.median(seconds))
    if len(seconds) > 1:
        p95 = statistics.quantiles(seconds, n=20, method="inclusive")[18]
        assert shown(html, "latency-p95") == duration(p95)


def test_chart_stacks_each_hours_decisions_by_outcome(demo: Client) -> None:
    html = page(demo)
    assert '<svg class="ov-chart-svg"' in html
    assert '<title id="ov-chart-title">Decisions per hour by policy outcome</title>' in html
    assert '<desc id="ov-chart-desc">24 hours from' in html
    for outcome in PolicyEvaluation.Outcome.values:
        drawn = re.findall(rf'class="ov-bar ov-{outcome}" data-count="(\d+)"', html)
        assert sum(map(int, drawn)) == int(shown(html, f"outcome-{outcome}"))
    hidden_table = html.split('<div class="visually-hidden"><table>', 1)[1].split("</table>", 1)[0]
    assert hidden_table.count('<th scope="row">') == 24


def test_run_stuck_in_compensation_failed_is_listed_with_its_links(demo: Client) -> None:
    agent = ServiceAccount.objects.get(org=demo_org())
    run = stuck_compensation(agent, "Shift $800/day whose compensation keeps failing")
    assert run.status == RunStatus.COMPENSATION_FAILED

    listed = section(page(demo), "needs-person")
    assert (
        f'<a href="/decisions/{run.decision_id}/">'
        "Shift $800/day whose compensation keeps failing</a>" in listed
    )
    assert f'<a href="/runs/{run.run_id}/">what is left</a>' in listed
    assert "credit_target_channel" in listed


def test_last_drill_of_each_workflow_is_linked_and_drills_are_counted_apart(
    demo: Client,
) -> None:
    before = page(demo)
    workspace = Workspace.objects.get(org=demo_org())
    drills = [
        start_drill(
            workspace=workspace,
            workflow_id="execute_rebalance_spend",
            step_id="credit_target_channel",
            fault=fault,
            started_by="user:operator",
        )
        for fault in ("fatal", "rate_limit")
    ]
    drain()
    html = page(demo)
    latest = Drill.objects.select_related("run").get(pk=drills[-1].pk)

    assert f'<a href="/drills/{latest.id}/">execute_rebalance_spend</a>' in html
    assert f"/drills/{drills[0].id}/" not in html
    assert shown(html, "drill-result") == label(drill_result(latest))
    assert shown(html, "decisions-total") == shown(before, "decisions-total")
    assert shown(html, "state-compensated") == shown(before, "state-compensated")
    assert shown(html, "drill-decisions") == "2 drill decisions not counted"
    assert shown(html, "drill-runs") == "2 drill runs not counted"


def test_another_organizations_rows_never_show(demo: Client, member: Any) -> None:
    before = every_figure(page(demo))
    other = Organization.objects.create(name="Other", slug="other")
    workspace = Workspace.objects.create(org=other, name="Default", slug="default")
    agent = ServiceAccount.objects.create(org=other, workspace=workspace, name="other-agent")
    made = sample_data.decisions(agent, 30, summary="Other org's rebalance")
    WorkflowRun.objects.filter(decision=made[0]).update(
        status=RunStatus.COMPENSATION_FAILED, finished_at=timezone.now()
    )
    WorkflowRun.objects.filter(decision=made[1]).update(status=RunStatus.AWAITING_APPROVAL)

    html = page(demo)
    assert every_figure(html) == before
    assert "Other org" not in html
    assert not any(d.id in html for d in made)

    demo.force_login(member("other-admin", Role.ADMIN, org=other))
    theirs = page(demo)
    assert shown(theirs, "decisions-total") == "30"
    assert shown(theirs, "held-count") == "1"
    assert f'href="/decisions/{made[0].id}/"' in section(theirs, "needs-person")
    assert SEED_DECISION_ID not in theirs


def test_htmx_refresh_renders_the_body_only_and_keeps_polling(demo: Client) -> None:
    response = demo.get("/", headers={"HX-Request": "true"})
    body = response.content.decode()

    assert response.status_code == 200
    assert "<html" not in body
    assert body.lstrip().startswith('<div id="overview"')
    assert 'hx-get="/" hx-trigger="every 5s" hx-swap="outerHTML"' in body
    assert "HX-Request" in response["Vary"]


def test_empty_organization_says_what_to_do_next(client: Client, member: Any) -> None:
    client.force_login(member("newcomer", Role.VIEWER))
    html = page(client)

    assert "Submit one with <code>python manage.py submit FILE.json</code>" in html
    assert "<code>POST /api/v1/decisions/</code>" in html
    assert 'No drill yet.</strong> Rehearse a failure on <a href="/drills/">Drills</a>' in html
    assert "Nothing needs a person." in html
    assert shown(html, "compensation-rate") == "—"
    assert shown(html, "held-count") == "0"
    assert "<svg" not in html


def grow(agent: ServiceAccount, count: int) -> None:
    """Add ``count`` decisions with every kind of row the overview reads: held runs, runs
    needing a person, finished forward steps and a drill."""
    made = sample_data.decisions(agent, count)
    runs = list(WorkflowRun.objects.filter(decision__in=made))
    now = timezone.now()
    for run in runs[: count // 3]:
        run.status = RunStatus.AWAITING_APPROVAL
    for run in runs[count // 3 : count // 2]:
        run.status = RunStatus.COMPENSATION_FAILED
    WorkflowRun.objects.bulk_update(runs, ["status"])
    StepExecution.objects.bulk_create(
        StepExecution(
            run=run,
            org=agent.org,
            step_id=step,
            name=step,
            kind=StepExecution.Kind.FORWARD,
            position=position,
            status=StepExecution.Status.SUCCEEDED,
            attempts=1,
            idempotency_key=step_key(run.idempotency_key, step),
            started_at=now - timedelta(seconds=position + 1),
            finished_at=now - timedelta(seconds=position),
        )
        for run in runs
        for position, step in enumerate(("debit_source_channel", "credit_target_channel"))
    )
    start_drill(
        workspace=agent.workspace,
        workflow_id="execute_rebalance_spend",
        step_id="credit_target_channel",
        fault="fatal",
        started_by="user:ops",
    )


def queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as captured:
        page(client)
    return len(captured)


def test_queries_do_not_grow_with_rows(agent: ServiceAccount, client: Client, member: Any) -> None:
    client.force_login(member("viewer", Role.VIEWER))
    grow(agent, 6)
    few = queries(client)
    grow(agent, 600)
    many = queries(client)
    cache.clear()  # the sample rows are stamped in minutes already counted and kept
    recounted = queries(client)

    assert few == many == recounted
    html = page(client)
    assert shown(html, "decisions-total") == "606"
    assert shown(html, "held-count") == str(2 + 200)


def test_percentile_interpolates_like_percentile_cont() -> None:
    values = sorted(random.Random(7).uniform(0, 10) for _ in range(101))
    assert percentile(values, 0.5) == statistics.median(values)
    expected = statistics.quantiles(values, n=20, method="inclusive")[18]
    assert percentile(values, 0.95) == pytest.approx(expected)
    assert percentile([4.0], 0.95) == 4.0


def test_chart_bars_are_as_tall_as_their_counts() -> None:
    start = window_start(timezone.now())
    hours = [HourCount(start + timedelta(hours=n)) for n in range(24)]
    hours[3] = HourCount(hours[3].start, allow=6, deny=2)
    hours[20] = HourCount(hours[20].start, require_human=4)
    svg = str(overview_chart.draw(hours))

    bars = re.findall(r'class="ov-bar ov-(\w+)" data-count="(\d+)"[^>]* height="([\d.]+)"', svg)
    heights = {(kind, int(count)): float(height) for kind, count, height in bars}
    assert set(heights) == {("allow", 6), ("deny", 2), ("require_human", 4)}
    assert heights["allow", 6] == pytest.approx(3 * heights["deny", 2], rel=0.01)
    assert heights["require_human", 4] == pytest.approx(2 * heights["deny", 2], rel=0.01)
    assert svg.count('<g class="ov-hour"') == 24
    assert f">{hours[0].start:%H:%M}</text>" in svg
    assert "6 allowed, 4 needing approval, 2 denied" in svg
    assert overview_chart.nice_ceiling(8) == 10
    assert overview_chart.nice_ceiling(72_000) == 100_000


def test_kept_minutes_are_counted_once_and_new_rows_on_every_request(
    agent: ServiceAccount,
) -> None:
    now = timezone.now()
    evaluations = PolicyEvaluation.objects.filter(org=agent.org)

    def total(at: Any) -> int:
        counts = hourly_counts(
            f"test:{agent.org_id}",
            evaluations,
            moment="evaluated_at",
            keys=("outcome",),
            since=window_start(at),
            now=at,
        )
        return counts.total()

    def arrive(at: Any) -> None:
        [decision] = sample_data.decisions(agent, 1)
        evaluations.filter(decision=decision).update(evaluated_at=at)

    arrive(now - timedelta(minutes=30))
    assert total(now) == 1
    arrive(now + timedelta(seconds=30))  # written after the first count
    assert total(now + SETTLE) == 2
    assert total(now + 3 * SETTLE) == 2  # its minute is kept now: counted once
    arrive(now - timedelta(minutes=30))  # stamped in a kept minute: seen once recounted
    assert total(now + 3 * SETTLE) == 2
    cache.clear()
    assert total(now + 3 * SETTLE) == 3


def test_a_decision_arriving_after_the_page_was_read_is_counted(demo: Client) -> None:
    before = page(demo)
    agent = ServiceAccount.objects.get(org=demo_org())
    submit(agent, rebalance(amount=100))
    after = page(demo)

    assert int(shown(after, "decisions-total")) == int(shown(before, "decisions-total")) + 1
    assert int(shown(after, "outcome-allow")) == int(shown(before, "outcome-allow")) + 1


def test_benchpages_reports_the_overview(db: None) -> None:
    printed = command("benchpages", decisions=120, mutations=10, repeat=1)

    assert "overview /, first request (whole window)" in printed
    assert re.search(r"overview /, 120 decisions in its 24 h +median +[\d.]+ ms", printed)
