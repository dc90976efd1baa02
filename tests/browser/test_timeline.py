"""What an operator does in the dashboard, in Chromium."""

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from controlplane.devtools.demo import SEED_DECISION_ID
from controlplane.intake.serializers import DecisionInSerializer
from controlplane.intake.submit import submit_decision
from controlplane.models import ServiceAccount
from mutations.models import Mutation, SandboxFault
from mutations.services import Surface
from runs.keys import step_calls_prefix
from tests.browser.conftest import screenshot
from tests.conftest import first_run_key, rebalance
from tests.processes import Runners

SEED_PAGE = f"/decisions/{SEED_DECISION_ID}/"


def test_seed_timeline_shows_the_proof(
    logged_in: Page, runners: Runners, live_server: Any, tmp_path: Path
) -> None:
    page = logged_in
    runners.start("--until-idle").wait(timeout=60)

    page.get_by_label("Status").select_option("compensated")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("#decision-rows tr")
    expect(rows).to_have_count(1)
    expect(rows.first.get_by_test_id("status")).to_have_text("Compensated")
    page.get_by_label("Status").select_option("")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#decision-rows tr")).to_have_count(4)
    screenshot(page, "decisions", tmp_path)

    page.get_by_role("link", name="Shift $800/day from Meta to Google").click()
    page.wait_for_url(f"**{SEED_PAGE}")
    mutations = page.locator("li.mutation")
    expect(mutations).to_have_count(3)
    statuses = [t.strip() for t in mutations.locator(".badge").all_inner_texts()]
    assert statuses == ["Success", "Failed", "Rolled back"]
    expect(page.get_by_text("net change: zero")).to_be_visible()
    debit, _, undo = Mutation.objects.filter(decision_id=SEED_DECISION_ID)
    arrow = page.locator("svg.timeline-svg path.tl-undo")
    expect(arrow).to_have_count(1)
    assert arrow.get_attribute("data-from") == undo.mutation_id
    assert arrow.get_attribute("data-to") == debit.mutation_id

    raw = json.loads(page.locator("#raw-mutations").inner_text())
    api = page.request.get(f"{live_server.url}/api/v1/mutations/?decision_id={SEED_DECISION_ID}")
    assert raw == api.json()
    screenshot(page, "timeline", tmp_path)

    page.locator(f"li#{undo.mutation_id}").get_by_role(
        "link", name="#1 debit_source_channel"
    ).click()
    assert page.url.endswith(f"#{debit.mutation_id}")
    expect(page.locator(f"li#{debit.mutation_id}")).to_contain_text("Reversed by")


def test_timeline_bars_tell_their_attempt_on_focus_and_events_filter_in_place(
    logged_in: Page, runners: Runners, live_server: Any, tmp_path: Path
) -> None:
    page = logged_in
    runners.start("--until-idle").wait(timeout=60)
    page.goto(f"{live_server.url}{SEED_PAGE}")
    page.evaluate("window.loadedOnce = true")  # gone if the page ever reloads

    # The state comparison: the meta budget's values, its changed row highlighted.
    budget = page.locator(
        '[data-object="meta:meta-all-markets"] tr[data-field="daily_budget_micros"]'
    )
    expect(budget).to_have_class("changed")
    expect(budget.locator("ol.state-path li")).to_have_text(
        ["$20,000.00", "$19,200.00 #1", "$20,000.00 #3"]
    )

    # Tab reaches the bars; the focused one shows its details, error included.
    bars = page.locator("svg.timeline-svg g.tl-bar")
    expect(bars).to_have_count(5)
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.classList.contains('tl-retried')"):
            break
    focused = page.locator("g.tl-bar:focus")
    expect(focused).to_have_attribute("aria-label", re.compile(r"credit_target_channel attempt 1"))
    expect(focused.locator(".tl-tip")).to_be_visible()
    expect(focused.locator(".tl-tip")).to_contain_text("rate_limit_exceeded")
    # The margin that makes a bar easy to point at is never painted, whatever the bar.
    hits = page.locator("svg.timeline-svg rect.tl-hit")
    fills = hits.evaluate_all("rects => rects.map(r => getComputedStyle(r).fill)")
    assert set(fills) <= {"transparent", "rgba(0, 0, 0, 0)"}, fills
    bars.last.locator("rect.tl-hit").hover()
    expect(bars.last.locator(".tl-tip")).to_be_visible()
    expect(bars.last.locator(".tl-tip")).to_contain_text("credit_source_channel attempt 1")

    # Events by kind, swapped in place: the address changes, the page does not reload.
    page.get_by_role("navigation", name="Show the events of one kind").get_by_role(
        "link", name=re.compile("^Step retry scheduled")
    ).click()
    expect(page.locator("ol.events li")).to_have_count(2)
    assert "kind=step_retry_scheduled" in page.url
    assert page.evaluate("window.loadedOnce") is True
    page.get_by_role("link", name=re.compile("^All ")).click()
    expect(page.locator("ol.events li")).to_have_count(10)

    # On a phone nothing scrolls sideways but the drawing inside its own frame.
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") == 390
    screenshot(page, "timeline-phone", tmp_path)


@pytest.fixture
def agent(demo: None) -> ServiceAccount:
    return ServiceAccount.objects.select_related("workspace").get(name="decision-runtime-cron")


def submit(agent: ServiceAccount, document: dict[str, Any]) -> str:
    serializer = DecisionInSerializer(data=document)
    serializer.is_valid(raise_exception=True)
    submit_decision(
        workspace=agent.workspace, document=document, requested_by=agent.actor, surface=Surface.API
    )
    return str(document["id"])


def test_running_decision_reaches_its_terminal_badge_without_reload(
    logged_in: Page, runners: Runners, agent: ServiceAccount
) -> None:
    page = logged_in
    page.evaluate("window.loadedOnce = true")  # gone if the page ever reloads
    document = rebalance(amount=120)
    # Two 5xx answers with real backoff keep the run visibly running for a few seconds.
    SandboxFault.objects.create(
        org=agent.org,
        platform="google",
        kind="transient",
        remaining=2,
        key_prefix=step_calls_prefix(first_run_key(document), "credit_target_channel"),
    )
    runners.start(BACKSTOP_RETRY_DELAY_SCALE="1")
    decision_id = submit(agent, document)

    row = page.locator(f'tr[data-decision="{decision_id}"]')
    expect(row).to_be_visible(timeout=10_000)
    badge = row.get_by_test_id("status")
    expect(badge).to_have_text("Running", timeout=10_000)
    expect(badge).to_have_text("Completed", timeout=20_000)
    assert page.evaluate("window.loadedOnce") is True

    row.get_by_role("link").click()
    expect(page.get_by_test_id("run-status")).to_have_text("Completed")
    expect(page.locator("svg.timeline-svg line.tl-retry")).to_have_count(2)
