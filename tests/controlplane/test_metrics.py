"""/metrics after the demo: exact counts that match the database, refused without the
token, 404 when unprotected, and text Prometheus parses."""

from __future__ import annotations

from typing import Any

import pytest
from django.db.models import Count
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from controlplane.metrics.collectors import DURATION_BUCKETS
from controlplane.models import Decision, Organization, ServiceAccount
from controlplane.notify.models import Delivery, WebhookEndpoint
from mutations.models import LogHead, Mutation
from runs import engine, instrumentation
from runs.models import RunStatus, StepExecution, WorkflowRun
from runs.runner import Worker
from runs.saga import Action
from runs.state import RunState
from tests.conftest import allow_everything, command, rebalance, submit

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "metrics-test-token"


@pytest.fixture
def protected(settings: Any) -> None:
    settings.BACKSTOP_METRICS_TOKEN = TOKEN
    settings.BACKSTOP_METRICS_ALLOWED_ADDRESSES = []


@pytest.fixture
def demo() -> Organization:
    command("demo")
    command("runworkflows", until_idle=True)
    return Organization.objects.get(slug="demo")


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: Client) -> Samples:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def test_metrics_after_the_demo_match_the_database(
    client: Client, protected: None, demo: Organization
) -> None:
    samples = scrape(client)
    runs = WorkflowRun.objects.filter(org=demo)

    compensated = runs.filter(status=RunStatus.COMPENSATED, is_drill=False).count()
    assert compensated >= 1  # the seed
    assert (
        value(samples, "backstop_runs_total", org="demo", status="compensated", drill="false")
        == compensated
    )
    completed = runs.filter(status=RunStatus.COMPLETED, is_drill=False).count()
    assert (
        value(samples, "backstop_runs_total", org="demo", status="completed", drill="false")
        == completed
    )

    held = runs.filter(status=RunStatus.AWAITING_APPROVAL).count()
    assert held == 1  # the $6,000 launch
    assert value(samples, "backstop_held_actions", org="demo") == held
    assert value(samples, "backstop_held_action_oldest_age_seconds", org="demo") >= 0

    by_outcome = dict(
        Decision.objects.filter(org=demo, type="rebalance_spend")
        .values_list("evaluation__outcome")
        .annotate(n=Count("id"))
        .order_by()
    )
    assert by_outcome["deny"] == 1
    for outcome, n in by_outcome.items():
        assert (
            value(
                samples,
                "backstop_decisions_total",
                org="demo",
                type="rebalance_spend",
                outcome=outcome,
            )
            == n
        )

    # The seed's credit: three attempts, two of them retries; each step's time counted.
    forward = StepExecution.objects.filter(org=demo, kind="forward")
    retries = sum(max(s.attempts - 1, 0) for s in forward)
    assert retries >= 2
    assert value(samples, "backstop_step_retries_total", org="demo", kind="forward") == retries
    timed = forward.filter(status__in=["succeeded", "failed"]).count()
    assert value(samples, "backstop_step_duration_seconds_count", org="demo") == timed
    assert value(samples, "backstop_step_duration_seconds_bucket", org="demo", le="+Inf") == timed
    largest = repr(float(DURATION_BUCKETS[-1]))
    assert (
        value(samples, "backstop_step_duration_seconds_bucket", org="demo", le=largest) == timed
    )  # the demo's steps take well under five minutes
    compensations = StepExecution.objects.filter(org=demo, kind="compensation")
    assert value(samples, "backstop_compensation_duration_seconds_count", org="demo") == (
        compensations.filter(status__in=["succeeded", "failed"]).count()
    )

    assert value(samples, "backstop_runner_queue_depth", org="demo") == 0  # drained
    head = LogHead.objects.get(org=demo)
    assert value(samples, "backstop_chain_broken", org="demo") == (head.broken_at is not None)
    assert value(samples, "backstop_chain_sequence", org="demo") == head.sequence
    assert value(samples, "backstop_chain_verified_sequence", org="demo") == head.verified_sequence


def test_queue_depth_counts_due_runs_before_a_runner_drains_them(
    client: Client, protected: None
) -> None:
    command("demo")
    due = WorkflowRun.objects.filter(org__slug="demo", status=RunStatus.PENDING).count()
    assert due > 0
    assert value(scrape(client), "backstop_runner_queue_depth", org="demo") == due


def test_lease_losses_are_counted_per_org(
    client: Client, protected: None, demo: Organization
) -> None:
    before = scrape(client).get(
        ("backstop_runner_lease_losses_total", frozenset({("org", "demo")})), 0.0
    )
    instrumentation.count_lease_lost(demo.id)
    after = value(scrape(client), "backstop_runner_lease_losses_total", org="demo")
    assert after == before + 1


def test_metrics_are_refused_without_the_token(client: Client, protected: None) -> None:
    assert client.get("/metrics").status_code == 401
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong["WWW-Authenticate"].startswith("Bearer")


def test_metrics_do_not_exist_unless_protected(client: Client, settings: Any) -> None:
    settings.BACKSTOP_METRICS_TOKEN = ""
    settings.BACKSTOP_METRICS_ALLOWED_ADDRESSES = []
    assert client.get("/metrics").status_code == 404


def test_allowed_addresses_scrape_without_a_token(client: Client, settings: Any) -> None:
    settings.BACKSTOP_METRICS_TOKEN = ""
    settings.BACKSTOP_METRICS_ALLOWED_ADDRESSES = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.0.2.1").status_code == 403


def test_a_scrape_is_a_handful_of_queries(
    client: Client, protected: None, demo: Organization, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(10):
        response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200


def test_failed_webhook_deliveries_are_counted(
    client: Client, protected: None, demo: Organization
) -> None:
    endpoint = WebhookEndpoint.objects.create(
        org=demo, url="http://receiver.test/hook", kinds=["run.compensated"], created_by="test"
    )
    now = timezone.now()
    for status in ("failed", "failed", "delivered"):
        Delivery.objects.create(
            org=demo, endpoint=endpoint, kind="run.compensated", status=status, next_attempt_at=now
        )
    samples = scrape(client)
    failed = Delivery.objects.filter(org=demo, status="failed").count()
    assert value(samples, "backstop_webhook_deliveries", org="demo", status="failed") == failed


def test_a_runner_counts_the_outcome_it_drops_after_losing_the_lease(
    client: Client,
    protected: None,
    agent: ServiceAccount,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    allow_everything(agent.workspace)
    decision = submit(agent, rebalance())
    run = WorkflowRun.objects.get(decision=decision)
    attempt = engine.attempt

    def taken_meanwhile(state: RunState, action: Action) -> engine.Called:
        called = attempt(state, action)
        # The lease ran out during the call and another runner took the run.
        WorkflowRun.objects.filter(pk=state.run.pk).update(leased_by="runner-b")
        return called

    monkeypatch.setattr(engine, "attempt", taken_meanwhile)
    losses = ("backstop_runner_lease_losses_total", frozenset({("org", agent.org.slug)}))
    before = scrape(client).get(losses, 0.0)

    with caplog.at_level("WARNING", logger="runs.runner"):
        Worker().run(once=True)

    assert scrape(client)[losses] == before + 1
    (lost,) = [r for r in caplog.records if "lease lost" in r.getMessage()]
    assert (getattr(lost, "run_id", None), getattr(lost, "trace_id", None)) == (
        run.run_id,
        decision.trace_id,
    )
    assert not Mutation.objects.filter(run=run).exists()  # the new holder records it
