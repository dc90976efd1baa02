"""Every page, checked by axe-core in Chromium at a desktop and a phone width, in the
light and the dark theme: no serious or critical violation, no horizontal scroll."""

from __future__ import annotations

from typing import Any

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, ViewportSize, expect

from controlplane.devtools.demo import SEED_DECISION_ID
from runs.models import WorkflowRun
from tests.processes import Runners

VIEWPORTS: dict[str, ViewportSize] = {
    "desktop": {"width": 1440, "height": 900},
    "phone": {"width": 390, "height": 844},
}
SERIOUS = {"serious", "critical"}


def pages() -> list[str]:
    run = WorkflowRun.objects.get(decision_id=SEED_DECISION_ID)
    return [
        "/",
        "/decisions/",
        f"/decisions/{SEED_DECISION_ID}/",
        f"/runs/{run.run_id}/",
        "/approvals/",
        "/drills/",
        "/policies/",
        "/workflows/",
        "/tokens/",
    ]


def log_in(page: Page, url: str, username: str) -> None:
    page.goto(f"{url}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("backstop-demo")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(lambda address: "/login/" not in address)


@pytest.mark.parametrize("theme", ["light", "dark"])
@pytest.mark.parametrize("viewport", VIEWPORTS)
def test_every_page_passes_axe_without_horizontal_scroll(
    page: Page, live_server: Any, demo: None, runners: Runners, viewport: str, theme: str
) -> None:
    runners.start("--until-idle").wait(timeout=60)
    page.set_viewport_size(VIEWPORTS[viewport])
    page.emulate_media(color_scheme=theme)  # type: ignore[arg-type]
    log_in(page, live_server.url, "admin")
    axe = Axe()
    problems = []
    for path in pages():
        response = page.goto(f"{live_server.url}{path}")
        assert response is not None and response.status == 200, path
        found = axe.run(page).response["violations"]
        problems += [
            f"{path}: {v['id']} ({v['impact']}) {v['help']}: "
            + "; ".join(node["target"][0] for node in v["nodes"][:3])
            for v in found
            if v["impact"] in SERIOUS
        ]
        width = page.evaluate("document.documentElement.scrollWidth")
        if width > VIEWPORTS[viewport]["width"]:
            problems.append(f"{path}: {width} px wide, scrolls sideways")
    assert not problems, "\n".join(problems)


def test_dark_mode_toggle_is_remembered(page: Page, live_server: Any, demo: None) -> None:
    page.emulate_media(color_scheme="light")
    log_in(page, live_server.url, "operator")
    toggle = page.get_by_role("button", name="Dark mode")
    expect(toggle).to_have_attribute("aria-pressed", "false")
    toggle.click()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    expect(page.get_by_role("button", name="Dark mode")).to_have_attribute("aria-pressed", "true")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(15, 20, 25)"  # --bg's dark value


def test_navigation_folds_into_a_menu_on_a_phone(page: Page, live_server: Any, demo: None) -> None:
    page.set_viewport_size(VIEWPORTS["phone"])
    log_in(page, live_server.url, "operator")
    decisions = page.get_by_role("navigation", name="Main").get_by_role("link", name="Decisions")
    expect(decisions).to_be_hidden()
    menu = page.get_by_role("button", name="Menu")
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    decisions.click()
    page.wait_for_url("**/decisions/")
