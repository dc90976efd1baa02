"""Destructive actions ask first (Reject, Activate, Revoke), and still work without
JavaScript; the approvals page shows relative times, the money at stake, what happens next."""

import re
from typing import Any

import pytest
from django.test import Client

from controlplane.access.tokens import create_token
from controlplane.models import ApiToken, PolicyVersion, Role, ServiceAccount
from runs.models import RunStatus, WorkflowRun
from tests.conftest import rebalance, submit

pytestmark = pytest.mark.django_db


def form_tag(html: str, action: str) -> str:
    """Return the opening <form> tag that posts to ``action``."""
    match = re.search(rf'<form [^>]*action="{re.escape(action)}"[^>]*>', html)
    assert match, f"no form posts to {action}"
    return match.group(0)


def words(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def part(pattern: str, html: str) -> str:
    """Return the words of the first part of the page ``pattern`` captures."""
    found = re.search(pattern, html, re.S)
    assert found, pattern
    return words(found.group(1))


@pytest.fixture
def as_member(client: Client, member: Any) -> Any:
    def log_in(role: str) -> Client:
        client.force_login(member(f"a-{role}", role))
        return client

    return log_in


def test_reject_asks_first_and_still_posts_without_javascript(
    agent: ServiceAccount, as_member: Any
) -> None:
    run = submit(agent, rebalance(amount=6000)).runs.get()
    client = as_member(Role.APPROVER)
    html = client.get("/approvals/").content.decode()

    reject = form_tag(html, f"/runs/{run.run_id}/reject/")
    assert 'method="post"' in reject
    assert "onsubmit=\"return confirm('Reject this run? It ends rejected and changes nothing" in (
        reject
    )
    assert "confirm(" not in form_tag(html, f"/runs/{run.run_id}/approve/")

    # Without JavaScript the form posts as it always did.
    client.post(f"/runs/{run.run_id}/reject/", {"comment": "too much"})
    assert WorkflowRun.objects.get(pk=run.pk).status == RunStatus.REJECTED


def test_activate_asks_first_but_validate_and_dry_run_do_not(
    agent: ServiceAccount, as_member: Any
) -> None:
    client = as_member(Role.ADMIN)
    html = client.get("/policies/").content.decode()
    tag = re.search(r'<form [^>]*class="policy-form"[^>]*>', html)
    assert tag
    assert "event.submitter?.value !== 'activate' || confirm('Activate this version?" in (
        tag.group(0)
    )
    text = "version: strict_v2\ndefault: require_human\nrules: []\n"
    client.post("/policies/", {"text": text, "action": "activate"})
    assert PolicyVersion.objects.get(is_active=True).version == "strict_v2"


def test_revoke_asks_first_and_still_posts_without_javascript(
    agent: ServiceAccount, as_member: Any
) -> None:
    token, _ = create_token(service_account=agent, created_by="user:boss")
    client = as_member(Role.ADMIN)
    html = client.get("/tokens/").content.decode()

    revoke = form_tag(html, f"/tokens/{token.pk}/revoke/")
    assert f"confirm('Revoke bst_{token.lookup}_" in revoke
    assert "Requests with it get 401 at once" in revoke
    client.post(f"/tokens/{token.pk}/revoke/")
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None


def test_approvals_show_money_at_stake_and_relative_times(
    agent: ServiceAccount, as_member: Any
) -> None:
    first = submit(agent, rebalance(amount=6000)).runs.get()
    submit(agent, rebalance(amount=9000))
    html = as_member(Role.APPROVER).get("/approvals/").content.decode()

    waiting = part(r'data-testid="waiting">(.*?)</p>', html)
    assert " ".join(waiting.split()) == "2 runs waiting · USD 15,000.00/day at stake"
    card = html.split(f'data-run="{first.run_id}"')[1].split("</section>")[0]
    at_stake = re.search(r'data-testid="at-stake">(.*?)</dd>', card)
    assert at_stake and "USD 6,000.00/day" in words(at_stake.group(1))
    held = re.search(
        r'data-testid="held-since"><time datetime="[^"]+" title="[^"]+">(.*?)</time>', card
    )
    expires = re.search(
        r'data-testid="expires"><time datetime="[^"]+" title="[^"]+">(.*?)</time>', card
    )
    assert held and held.group(1) == "just now"
    assert expires and expires.group(1) == "in 23 h"  # a day, less the moments the test took


def test_no_held_run_says_what_happens_next(agent: ServiceAccount, as_member: Any) -> None:
    html = as_member(Role.APPROVER).get("/approvals/").content.decode()
    empty = part(r'data-testid="empty">(.*?)</div>', html)
    assert "Nothing is waiting for a person." in empty
    assert "nothing is changed on any platform until an approver approves it" in empty
    assert "expires after 1 d without one" in empty
