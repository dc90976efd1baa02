"""The overview in Chromium: where a person lands after logging in, updating itself."""

from pathlib import Path
from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from controlplane.drills.start import start_drill
from controlplane.intake.submit import submit_decision
from controlplane.models import Decision, ServiceAccount, Workspace
from mutations.services import Surface
from runs.models import RunStatus, WorkflowRun
from tests.browser.conftest import screenshot
from tests.conftest import rebalance
from tests.processes import Runners

SERIOUS = {"serious", "critical"}


def log_in(page: Page, url: str, username: str = "operator") -> None:
    page.goto(f"{url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("backstop-demo")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{url}/")


def held() -> int:
    return WorkflowRun.objects.filter(status=RunStatus.AWAITING_APPROVAL, is_drill=False).count()


def test_log_in_lands_on_the_overview_with_counts_and_chart(
    page: Page, live_server: Any, demo: None, runners: Runners, tmp_path: Path
) -> None:
    start_drill(
        workspace=Workspace.objects.get(org__slug="demo"),
        workflow_id="execute_rebalance_spend",
        step_id="credit_target_channel",
        fault="rate_limit",
        started_by="user:operator",
    )
    runners.start("--until-idle").wait(timeout=60)
    page.set_viewport_size({"width": 1440, "height": 900})
    log_in(page, live_server.url)

    expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    real = Decision.objects.filter(drill__isnull=True).count()
    expect(page.get_by_test_id("decisions-total")).to_have_text(str(real))
    expect(page.get_by_test_id("held-count")).to_have_text(str(held()))
    compensated = WorkflowRun.objects.filter(status=RunStatus.COMPENSATED, is_drill=False)
    expect(page.get_by_test_id("state-compensated")).to_have_text(str(compensated.count()))
    chart = page.get_by_role("img", name="Decisions per hour by policy outcome")
    expect(chart).to_be_visible()
    expect(page.locator("rect.ov-bar").first).to_be_visible()
    expect(page.get_by_role("link", name="execute_rebalance_spend")).to_be_visible()
    screenshot(page, "overview", tmp_path)


def test_overview_updates_itself_when_an_action_is_held(
    page: Page, live_server: Any, demo: None
) -> None:
    log_in(page, live_server.url)
    before = held()
    expect(page.get_by_test_id("held-count")).to_have_text(str(before))

    agent = ServiceAccount.objects.select_related("workspace").get(name="decision-runtime-cron")
    document = rebalance(amount=9000)
    submit_decision(
        workspace=agent.workspace, document=document, requested_by=agent.actor, surface=Surface.API
    )

    expect(page.get_by_test_id("held-count")).to_have_text(str(before + 1), timeout=12_000)
    expect(page.get_by_test_id("at-stake")).to_contain_text("USD")


@pytest.mark.parametrize("width", [1440, 390])
def test_overview_passes_axe_in_both_themes_without_sideways_scroll(
    page: Page, live_server: Any, demo: None, width: int
) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page, live_server.url)
    problems = []
    for theme in ("light", "dark"):
        page.emulate_media(color_scheme=theme)
        page.reload()
        found = Axe().run(page).response["violations"]
        problems += [
            f"{theme}: {v['id']} ({v['impact']}) {v['help']}: "
            + "; ".join(node["target"][0] for node in v["nodes"][:3])
            for v in found
            if v["impact"] in SERIOUS
        ]
        scrolled = page.evaluate("document.documentElement.scrollWidth")
        if scrolled > width:
            problems.append(f"{theme}: {scrolled} px wide at {width} px, scrolls sideways")
    assert not problems, "\n".join(problems)
