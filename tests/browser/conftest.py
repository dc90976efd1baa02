"""Real Chromium (Debian's package) driving the real dashboard served by a live server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"

# Playwright's sync API runs an event loop in this thread; the ORM calls made by the test
# itself (fixtures, assertions) are still plain synchronous calls.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package.")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture
def demo(transactional_db: None) -> None:
    call_command("demo", stdout=open(os.devnull, "w"))  # noqa: SIM115


@pytest.fixture
def logged_in(page: Page, live_server: Any, demo: None) -> Page:
    page.goto(f"{live_server.url}/decisions/")
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill("backstop-demo")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/decisions/")
    return page


def screenshot(page: Page, name: str, tmp_path: Path) -> None:
    """Save a screenshot: into docs/ when BACKSTOP_SCREENSHOTS=1, else next to the test."""
    folder = SCREENSHOTS if os.environ.get("BACKSTOP_SCREENSHOTS") == "1" else tmp_path
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)
