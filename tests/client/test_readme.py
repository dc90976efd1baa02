"""The README's agent loop with backstop_client, run as written against a live server."""

from __future__ import annotations

import re
from typing import Any

import pytest

from backstop_client import Action, PolicyOutcome
from controlplane.models import ServiceAccount
from tests.client.test_client import token_for
from tests.conftest import load_fixture, rebalance
from tests.controlplane.test_mcp import seed_scenario
from tests.processes import ROOT, Runners, WebServer

pytestmark = pytest.mark.django_db(transaction=True)


def readme_loop() -> str:
    """Return the Python block of the README's "Python client" section."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Python client") :]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None
    return found.group(1)


class Agent:
    """An agent proposing given documents and noting how each one ended."""

    def __init__(self, *documents: dict[str, Any]) -> None:
        self.documents = documents
        self.outcomes: list[tuple[str, str]] = []

    def decide(self, actions: list[Action]) -> tuple[dict[str, Any], ...]:
        assert "rebalance_spend" in {a.decision_type for a in actions}
        return self.documents

    def refused(self, document: dict[str, Any], error: Exception) -> None:
        self.outcomes.append(("refused", type(error).__name__))

    def retry_later(self, document: dict[str, Any]) -> None:
        self.outcomes.append(("retry_later", document["id"]))

    def follow_up(self, decision_id: str) -> None:
        self.outcomes.append(("follow_up", decision_id))

    def drop(self, document: dict[str, Any], policy: PolicyOutcome) -> None:
        self.outcomes.append(("drop", policy.outcome))


def test_the_readme_agent_loop_reacts_to_each_outcome(
    agent: ServiceAccount, runners: Runners, web: WebServer
) -> None:
    seed = seed_scenario(agent)  # compensated: the credit is rate-limited until it gives up
    held = rebalance(amount=6000)
    reused = {**seed, "action": {**seed["action"], "amount": 900}}
    document = load_fixture("seed_decision.json")
    deletion = {  # the policy denies deleting a campaign
        **{k: document[k] for k in ("summary", "reasoning", "computed_at", "policy_version")},
        "type": "delete_campaign",
        "priority": "medium",
        "confidence": 0.9,
        "auto_executable": True,
        "action": {"type": "delete_campaign", "channel": "meta", "scope": {"market": "all"}},
    }
    runners.start()
    loop = readme_loop().replace("http://127.0.0.1:8000", web.url)
    driven = Agent(seed, held, reused, deletion)

    exec(loop, {"agent": driven, "token": token_for(agent)})

    assert driven.outcomes == [
        ("retry_later", seed["id"]),
        ("follow_up", held["id"]),
        ("refused", "Conflict"),
        ("drop", "deny"),
    ]
