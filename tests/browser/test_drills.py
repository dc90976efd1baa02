"""An operator runs a drill from the dashboard, in Chromium."""

from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.processes import Runners


def test_operator_starts_a_drill_and_sees_it_pass(
    logged_in: Page, live_server: Any, runners: Runners, tmp_path: Path
) -> None:
    page = logged_in
    runners.start()
    page.get_by_role("link", name="Drills").click()
    page.get_by_label("Step to fail").first.select_option(
        "execute_rebalance_spend:credit_target_channel"
    )
    page.get_by_label("Fault").first.select_option("rate_limit")
    page.get_by_role("button", name="Start drill").click()

    expect(page.get_by_test_id("drill-result")).to_have_text("pass", timeout=20_000)
    checks = page.locator("ul.checks li")
    expect(checks).to_have_count(5)
    expect(checks.filter(has_text="✓ terminal state")).to_contain_text("ended compensated")
    expect(checks.filter(has_text="in reverse order")).to_contain_text("✓")
    expect(checks.filter(has_text="before hash equals after hash")).to_contain_text("✓")
    page.get_by_role("link", name="← Drills").click()
    expect(page.locator("tr[data-drill]")).to_have_count(1)
    screenshot(page, "drills", tmp_path)
    page.go_back()

    page.get_by_role("link", name="dec_").click()
    expect(page.get_by_text("net change: zero")).to_be_visible()
    expect(page.locator("li.mutation")).to_have_count(3)


def test_drills_list_updates_itself_until_every_drill_has_finished(
    logged_in: Page, live_server: Any, runners: Runners
) -> None:
    page = logged_in
    runners.start()
    page.get_by_role("link", name="Drills").click()
    page.get_by_role("button", name="Drill everything").click()
    expect(page.get_by_role("status").first).to_contain_text("Started")
    results = page.locator("tr[data-drill] [data-testid=drill-result]")
    started = results.count()
    assert started > 1
    # No reload: the list polls until no drill is left unfinished, then stops.
    expect(page.locator("#drill-results[data-live=false]")).to_have_count(1, timeout=60_000)
    expect(results.filter(has_text="pass")).to_have_count(started)
    expect(page.locator("#drill-results")).not_to_have_attribute("hx-trigger", "every 2s")
    expect(page.get_by_test_id("started").first).to_contain_text("by operator")
