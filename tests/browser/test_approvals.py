"""An approver decides held actions in Chromium."""

from pathlib import Path
from typing import Any

from playwright.sync_api import Dialog, Page, expect

from mutations.models import Mutation
from mutations.services import Surface
from runs.models import RunStatus, WorkflowRun
from tests.browser.conftest import screenshot
from tests.conftest import rebalance
from tests.processes import Runners

HELD = "dec_01J1B8C4P6S8U0W2Y4A6C8E0G2"  # the demo's $6,000/day launch shift


def log_in(page: Page, live_server: Any, username: str) -> None:
    page.goto(f"{live_server.url}/approvals/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("backstop-demo")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/approvals/")


def test_approver_approves_and_watches_the_run_complete(
    page: Page, live_server: Any, demo: None, runners: Runners, tmp_path: Path
) -> None:
    runners.start()
    log_in(page, live_server, "approver")
    card = page.locator("section.held", has_text="for the product launch")
    expect(card).to_contain_text("large-shift-needs-human")
    screenshot(page, "approvals", tmp_path)
    card.get_by_label("Comment").first.fill("launch week, agreed with finance")
    card.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status").first).to_contain_text("Approved")

    page.goto(f"{live_server.url}/decisions/{HELD}/")
    expect(page.get_by_test_id("run-status")).to_have_text("Completed", timeout=20_000)
    expect(page.get_by_test_id("approval")).to_contain_text("by approver")
    expect(page.locator("li.mutation")).to_have_count(2)


def test_rejected_decision_ends_rejected_with_no_mutation(
    page: Page, live_server: Any, demo: None
) -> None:
    from controlplane.intake.submit import submit_decision
    from controlplane.models import ServiceAccount

    agent = ServiceAccount.objects.select_related("workspace").get(name="decision-runtime-cron")
    document = rebalance(amount=9000)
    document["summary"] = "Shift $9,000/day to Google for a trade show"
    submit_decision(
        workspace=agent.workspace, document=document, requested_by=agent.actor, surface=Surface.API
    )
    log_in(page, live_server, "approver")
    card = page.locator("section.held", has_text="trade show")
    expect(card.get_by_test_id("at-stake")).to_contain_text("USD 9,000.00/day")
    asked: list[str] = []

    def answer(accept: bool) -> None:
        def handle(dialog: Dialog) -> None:
            asked.append(dialog.message)
            if accept:
                dialog.accept()
            else:
                dialog.dismiss()

        page.once("dialog", handle)

    # Reject asks first; cancelling leaves the run held.
    answer(accept=False)
    card.get_by_role("button", name="Reject").click()
    assert asked and asked[-1].startswith("Reject this run?")
    expect(card).to_have_count(1)
    assert WorkflowRun.objects.get(decision_id=document["id"]).status == RunStatus.AWAITING_APPROVAL

    answer(accept=True)
    card.get_by_role("button", name="Reject").click()
    expect(page.locator("section.held", has_text="trade show")).to_have_count(0)
    assert len(asked) == 2

    page.goto(f"{live_server.url}/decisions/{document['id']}/")
    expect(page.get_by_test_id("run-status")).to_have_text("Rejected")
    assert WorkflowRun.objects.get(decision_id=document["id"]).status == RunStatus.REJECTED
    assert not Mutation.objects.filter(decision_id=document["id"]).exists()
