"""Real runner processes against the real PostgreSQL test database."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest
from django.db import connection
from django.db.models import Count

from controlplane.models import ServiceAccount
from mutations.connectors.sandbox import open_campaigns
from mutations.models import Mutation, SandboxCampaign, SandboxFault, SandboxOperation
from runs.keys import step_calls_prefix
from runs.models import TERMINAL_STATUSES, WorkflowRun
from tests.conftest import first_run_key, rebalance, submit

START_BUDGET = 1_000_000_000_000  # $1,000,000/day: no test run comes near zero


@pytest.fixture(autouse=True)
def _postgresql_only(transactional_db: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("runner processes share work through PostgreSQL")


@dataclass
class Plan:
    """Decisions submitted and what the sandbox must look like once they are all done."""

    expected_status: dict[str, str] = field(default_factory=dict)
    expected_budgets: Counter[tuple[str, str]] = field(default_factory=Counter)


def make_markets(agent: ServiceAccount, count: int) -> list[str]:
    markets = [f"m{n:03d}" for n in range(count)]
    open_campaigns(org_id=agent.org_id, markets=markets, daily_budget_micros=START_BUDGET)
    return markets


def submit_mix(agent: ServiceAccount, count: int, markets: list[str], fail_every: int = 3) -> Plan:
    """Submit rebalances across markets; every `fail_every`-th fails its last step."""
    plan = Plan()
    for n in range(count):
        market = markets[n % len(markets)]
        source, target = ("meta", "google") if n % 2 else ("google", "meta")
        document = rebalance(source=source, target=target, amount=10 + n % 7)
        document["action"]["scope"] = {"market": market}
        fails = n % fail_every == 0
        if fails:
            SandboxFault.objects.create(
                org=agent.org,
                platform=target,
                kind=SandboxFault.Kind.FATAL,
                key_prefix=step_calls_prefix(first_run_key(document), "credit_target_channel"),
            )
        decision = submit(agent, document)
        plan.expected_status[decision.id] = "compensated" if fails else "completed"
        if not fails:
            micros = document["action"]["amount"] * 1_000_000
            plan.expected_budgets[(source, market)] -= micros
            plan.expected_budgets[(target, market)] += micros
    return plan


def unfinished_runs() -> int:
    return WorkflowRun.objects.exclude(status__in=TERMINAL_STATUSES).count()


def assert_exactly_once(plan: Plan) -> None:
    """Every run ended as planned, each key applied once, no mutation row lost or doubled."""
    ended = dict(WorkflowRun.objects.values_list("decision_id", "status"))
    assert ended == plan.expected_status
    rows = Counter(Mutation.objects.values_list("decision_id", "status"))
    for decision_id, status in plan.expected_status.items():
        if status == "completed":
            assert rows[(decision_id, "success")] == 2, decision_id
            assert rows[(decision_id, "failed")] == 0, decision_id
        else:
            assert (
                rows[(decision_id, "success")],
                rows[(decision_id, "failed")],
                rows[(decision_id, "rolled_back")],
            ) == (1, 1, 1), decision_id
    applied = Mutation.objects.filter(status__in=["success", "rolled_back"])
    assert applied.count() == SandboxOperation.objects.count()
    assert set(applied.values_list("idempotency_key", flat=True)) == set(
        SandboxOperation.objects.values_list("idempotency_key", flat=True)
    )
    doubled = (
        Mutation.objects.values("run_id", "step_id", "status")
        .annotate(n=Count("mutation_id"))
        .filter(n__gt=1)
    )
    assert not doubled.exists()
    for (platform, market), delta in plan.expected_budgets.items():
        budget = SandboxCampaign.objects.get(platform=platform, market=market).daily_budget_micros
        assert budget == START_BUDGET + delta, (platform, market)


def replays() -> int:
    return sum(SandboxOperation.objects.values_list("replays", flat=True))
