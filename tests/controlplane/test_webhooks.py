"""Outbound notifications: deliveries written with their events, sent signed by real
runner processes to a real HTTP receiver, retried, and never lost to a killed runner."""

from __future__ import annotations

import hashlib
import hmac
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from controlplane.drills.start import start_drill
from controlplane.intake.approvals import decide_held_run
from controlplane.models import (
    Delivery,
    Drill,
    Membership,
    Role,
    ServiceAccount,
    WebhookEndpoint,
)
from controlplane.notify import enqueue
from controlplane.notify.chain import notify_broken_chains
from controlplane.notify.models import EVENT_KINDS
from controlplane.notify.sender import body_of
from controlplane.notify.services import create_endpoint
from mutations.connectors.sandbox import open_campaigns
from mutations.models import LogHead
from mutations.platformserver.process import ServerProcess, free_ports
from mutations.services import Surface
from runs import engine
from runs.records import Recorder
from tests.conftest import rebalance, submit
from tests.controlplane.test_mcp import seed_scenario
from tests.processes import ROOT, Runners
from tests.runs.test_group_commit import WORKER, claimed_runs, first_calls

pytestmark = pytest.mark.django_db(transaction=True)

FAST = {"BACKSTOP_WEBHOOK_BACKOFF_SCALE": "0", "BACKSTOP_WEBHOOK_CLAIM_SECONDS": "3"}


class Receiver:
    """The receiver process (tests/webhook_receiver.py) and the requests it recorded."""

    def __init__(self, directory: Path, *args: str) -> None:
        (self.port,) = free_ports(1)
        self.log = directory / f"received-{self.port}.jsonl"
        self.log.touch()
        command = [sys.executable, "tests/webhook_receiver.py", "--log", str(self.log)]
        self.process = ServerProcess(
            [*command, "--port", str(self.port), *args],
            ports=[self.port],
            cwd=ROOT,
            env={},
            log=directory / f"receiver-{self.port}.log",
        )
        self.url = f"http://127.0.0.1:{self.port}/hook"

    def requests(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def wait_for(self, done: Callable[[list[dict[str, Any]]], bool], seconds: float = 60) -> Any:
        deadline = time.monotonic() + seconds
        while not done(self.requests()):
            if time.monotonic() > deadline:
                raise AssertionError(f"the receiver got: {self.requests()}")
            time.sleep(0.1)
        return self.requests()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Callable[..., Receiver]]:
    started: list[Receiver] = []

    def start(*args: str) -> Receiver:
        started.append(Receiver(tmp_path, *args))
        return started[-1]

    yield start
    for one in started:
        one.process.stop()


def verified(request: dict[str, Any], secret: str) -> dict[str, Any]:
    """Check the request's signature as a receiver would; return its body."""
    parts = dict(p.split("=", 1) for p in request["headers"]["x-backstop-signature"].split(","))
    signed = f"{parts['t']}.{request['body']}".encode()
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, parts["v1"]), request
    assert abs(time.time() - int(parts["t"])) < 300
    body: dict[str, Any] = json.loads(request["body"])
    assert body["delivery_id"] == request["headers"]["x-backstop-delivery"]
    return body


def events_of(requests: list[dict[str, Any]]) -> set[tuple[str, str | None]]:
    """Return the (kind, decision id) of each request received."""
    return {
        (r["headers"]["x-backstop-event"], json.loads(r["body"]).get("decision_id"))
        for r in requests
    }


def test_approval_compensated_run_and_failed_drill_arrive_signed(
    agent: ServiceAccount, receiver: Callable[..., Receiver], runners: Runners
) -> None:
    listening = receiver()
    endpoint = create_endpoint(
        org=agent.org, url=listening.url, kinds=list(EVENT_KINDS), created_by="user:admin"
    )
    held = submit(agent, rebalance(amount=6000))  # the policy holds shifts above 5,000
    seed = submit(agent, seed_scenario(agent))
    drill = start_drill(
        workspace=agent.workspace,
        workflow_id="execute_rebalance_spend",
        step_id="credit_target_channel",
        fault="rate_limit",
        started_by="user:ops",
    )
    # The drill's run ends compensated; expecting it completed makes its check fail.
    Drill.objects.filter(pk=drill.pk).update(expected_status="completed")
    runners.start(**FAST)

    # The drill's run ends compensated too: wait for the seed's own.
    wanted = {
        ("approval.requested", held.id),
        ("run.compensated", seed.id),
        ("drill.failed", drill.decision_id),
    }
    requests = listening.wait_for(lambda got: wanted <= events_of(got))

    bodies = [verified(r, endpoint.secret) for r in requests]
    by_kind = {(b["kind"], b.get("decision_id")): b for b in bodies}
    requested = by_kind["approval.requested", held.id]
    assert requested["approval_url"].endswith("/approvals/")
    assert requested["run_id"] == held.runs.get().run_id
    compensated = by_kind["run.compensated", seed.id]
    assert compensated["status"] == "compensated"
    assert compensated["before_state_hash"] == compensated["after_state_hash"] is not None
    failed = by_kind["drill.failed", drill.decision_id]
    assert failed["drill_id"] == drill.id
    assert "terminal state" in failed["failed_checks"]
    assert all(r["headers"]["content-type"] == "application/json" for r in requests)


def test_receiver_answering_500_three_times_gets_the_fourth_try(
    agent: ServiceAccount, receiver: Callable[..., Receiver], runners: Runners
) -> None:
    flaky = receiver("--fail", "3")
    endpoint = create_endpoint(
        org=agent.org, url=flaky.url, kinds=["chain.broken"], created_by="user:admin"
    )
    (delivery,) = enqueue(agent.org_id, "chain.broken", {"broken_at": 7, "reason": "test"})
    runners.start(**FAST)

    requests = flaky.wait_for(lambda got: len(got) >= 4)
    assert [r["status"] for r in requests] == [500, 500, 500, 200]
    assert {r["headers"]["x-backstop-delivery"] for r in requests} == {delivery.id}
    assert all(verified(r, endpoint.secret)["broken_at"] == 7 for r in requests)
    delivery = wait_until_settled(delivery.id)
    assert (delivery.status, delivery.attempts, delivery.last_response_code) == (
        "delivered",
        4,
        200,
    )


def wait_until_settled(delivery_id: str, seconds: float = 30) -> Delivery:
    deadline = time.monotonic() + seconds
    while (delivery := Delivery.objects.get(pk=delivery_id)).status == "pending":
        assert time.monotonic() < deadline, delivery.last_error
        time.sleep(0.1)
    return delivery


def test_deliveries_survive_a_killed_runner(
    agent: ServiceAccount, receiver: Callable[..., Receiver], runners: Runners
) -> None:
    slow = receiver("--delay", "0.3")
    create_endpoint(org=agent.org, url=slow.url, kinds=["drill.failed"], created_by="user:admin")
    sent = {
        d.id
        for n in range(24)
        for d in enqueue(agent.org_id, "drill.failed", {"summary": f"drill {n}"})
    }
    first = runners.start(**FAST)
    slow.wait_for(lambda got: len(got) >= 3)
    first.send_signal(signal.SIGKILL)
    first.wait()
    pending = Delivery.objects.filter(pk__in=sent, status="pending").count()
    assert pending > 0  # the kill left work behind
    runners.start(**FAST)

    requests = slow.wait_for(
        lambda got: {r["headers"]["x-backstop-delivery"] for r in got} >= sent, seconds=90
    )
    assert {r["headers"]["x-backstop-delivery"] for r in requests} == sent
    for delivery_id in sent:
        assert wait_until_settled(delivery_id).status == "delivered"


def test_secret_shown_once_and_deliveries_listed_for_admins_only(
    agent: ServiceAccount, client: Client, member: Any
) -> None:
    admin = member("admin", Role.ADMIN)
    client.force_login(admin)
    answer = client.post(
        "/api/v1/webhooks/",
        {"url": "http://127.0.0.1:9/hook", "kinds": ["run.compensated"], "format": "slack"},
        content_type="application/json",
    )
    assert answer.status_code == 201, answer.content
    secret = answer.json()["secret"]
    endpoint = WebhookEndpoint.objects.get(pk=answer.json()["id"])
    assert secret == endpoint.secret and secret.startswith("whsec_")
    (delivery,) = enqueue(agent.org_id, "run.compensated", {"decision_id": "dec_X"})

    listed = client.get("/api/v1/webhooks/")
    deliveries = client.get(f"/api/v1/webhooks/{endpoint.id}/deliveries/")
    page = client.get("/settings/webhooks/")
    detail = client.get(f"/settings/webhooks/{endpoint.id}/")
    for later in (listed, deliveries, page, detail):
        assert later.status_code == 200
        assert secret not in later.content.decode()
    assert deliveries.json()["entries"][0]["id"] == delivery.id
    assert endpoint.url in page.content.decode()
    assert delivery.id in detail.content.decode() and "Redeliver" in detail.content.decode()

    Delivery.objects.filter(pk=delivery.pk).update(status="failed", attempts=10)
    again = client.post(f"/api/v1/deliveries/{delivery.id}/redeliver/")
    assert again.status_code == 200 and again.json()["status"] == "pending"

    created = client.post(
        "/settings/webhooks/",
        {"action": "create", "url": "https://hooks.example.com/x", "kinds": ["drill.failed"]},
    )
    shown = WebhookEndpoint.objects.get(url="https://hooks.example.com/x").secret
    assert shown in created.content.decode()
    assert shown not in client.get("/settings/webhooks/").content.decode()
    redelivered = client.post(f"/settings/webhooks/deliveries/{delivery.id}/redeliver/")
    assert redelivered.status_code == 302
    client.post("/settings/webhooks/", {"action": "disable", "endpoint": endpoint.id})
    assert enqueue(agent.org_id, "run.compensated", {"decision_id": "dec_Y"}) == []

    client.force_login(member("viewer", Role.VIEWER))
    assert client.get("/api/v1/webhooks/").status_code == 403
    assert client.get("/settings/webhooks/").status_code == 403
    assert client.post(f"/api/v1/deliveries/{delivery.id}/redeliver/").status_code == 403


def test_outbox_rows_commit_with_the_event_or_not_at_all(agent: ServiceAccount) -> None:
    create_endpoint(
        org=agent.org, url="http://127.0.0.1:9/", kinds=["approval.requested"], created_by="t"
    )
    with pytest.raises(RuntimeError), transaction.atomic():
        submit(agent, rebalance(amount=6000))
        assert Delivery.objects.count() == 1
        raise RuntimeError("the intake's transaction rolls back")
    assert Delivery.objects.count() == 0

    held = submit(agent, rebalance(amount=6000))
    (delivery,) = Delivery.objects.filter(kind="approval.requested")
    assert delivery.payload["decision_id"] == held.id
    assert delivery.status == "pending" and delivery.attempts == 0


def test_approval_decided_is_told_once_decided(agent: ServiceAccount, member: Any) -> None:
    create_endpoint(
        org=agent.org, url="http://127.0.0.1:9/", kinds=["approval.decided"], created_by="t"
    )
    approver = member("approver", Role.APPROVER)
    held = submit(agent, rebalance(amount=6000))
    run = held.runs.get()
    decide_held_run(
        membership=Membership.objects.get(user=approver),
        user=approver,
        run=run,
        approve=False,
        comment="too large",
        surface=Surface.DASHBOARD,
    )
    (delivery,) = Delivery.objects.filter(kind="approval.decided")
    assert delivery.payload["decision"] == "rejected"
    assert delivery.payload["decided_by"] == "user:approver"
    assert delivery.payload["run_id"] == run.run_id


def test_broken_chain_is_told_once_per_endpoint(agent: ServiceAccount) -> None:
    endpoint = create_endpoint(
        org=agent.org, url="http://127.0.0.1:9/", kinds=["chain.broken"], created_by="t"
    )
    LogHead.objects.update_or_create(
        org_id=agent.org_id, defaults={"broken_at": 3, "broken_reason": "entry 3: changed"}
    )
    assert notify_broken_chains() == 1
    assert notify_broken_chains() == 0
    (delivery,) = Delivery.objects.filter(kind="chain.broken")
    assert delivery.endpoint_id == endpoint.id
    assert delivery.payload["reason"] == "entry 3: changed"


def test_slack_format_is_an_incoming_webhook_message_with_a_link(
    agent: ServiceAccount,
) -> None:
    endpoint = create_endpoint(
        org=agent.org,
        url="http://127.0.0.1:9/",
        kinds=["approval.requested"],
        format="slack",
        created_by="t",
    )
    held = submit(agent, rebalance(amount=6000))
    (delivery,) = Delivery.objects.filter(kind="approval.requested")
    message = json.loads(body_of(delivery, endpoint))
    assert set(message) == {"text", "blocks"}
    assert f"{settings.BACKSTOP_PUBLIC_URL}/approvals/" in message["text"]
    assert held.summary in message["text"]
    assert message["blocks"][1]["elements"][0]["url"].endswith("/approvals/")


def test_secret_never_in_runner_logs(
    agent: ServiceAccount, receiver: Callable[..., Receiver], runners: Runners
) -> None:
    failing = receiver("--fail", "100")
    endpoint = create_endpoint(
        org=agent.org, url=failing.url, kinds=["chain.broken"], created_by="user:admin"
    )
    enqueue(agent.org_id, "chain.broken", {"broken_at": 1})
    runner = runners.start(**FAST, RUNNER_LOG_LEVEL="INFO")
    failing.wait_for(lambda got: len(got) >= 2)
    runner.send_signal(signal.SIGTERM)
    try:
        _, stderr = runner.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        runner.kill()
        _, stderr = runner.communicate()
    assert b"HTTP 500" in stderr
    assert endpoint.secret.encode() not in stderr


def test_runs_ending_in_a_group_cost_one_lookup_and_one_insert(agent: ServiceAccount) -> None:
    open_campaigns(
        org_id=agent.org_id, markets=[f"m{n}" for n in range(6)], daily_budget_micros=10**12
    )
    create_endpoint(
        org=agent.org, url="http://127.0.0.1:9/", kinds=["run.completed"], created_by="t"
    )
    states = claimed_runs(agent, 6)
    recorder = Recorder(worker_id=WORKER)
    for last in (False, True):  # debit, then credit: the runs end in the second group
        calls = first_calls(states)
        with CaptureQueriesContext(connection) as queries, recorder.recording(states):
            for state, called in calls:
                assert engine.record(recorder, state, called) is last

    sql = [q["sql"] for q in queries.captured_queries]
    assert sum('"controlplane_webhookendpoint"' in q for q in sql) == 1
    assert sum(q.startswith('INSERT INTO "controlplane_delivery"') for q in sql) == 1
    ended = Delivery.objects.filter(kind="run.completed")
    assert sorted(d.payload["run_id"] for d in ended) == sorted(s.run.run_id for s in states)
    assert {d.payload["status"] for d in ended} == {"completed"}


@pytest.mark.skipif(
    not connection.features.has_select_for_update_skip_locked, reason="one runner on SQLite"
)
def test_two_runners_share_the_deliveries_without_sending_one_twice(
    agent: ServiceAccount, receiver: Callable[..., Receiver], runners: Runners
) -> None:
    listening = receiver()
    create_endpoint(
        org=agent.org, url=listening.url, kinds=["drill.failed"], created_by="user:admin"
    )
    sent = {
        d.id
        for n in range(40)
        for d in enqueue(agent.org_id, "drill.failed", {"summary": f"drill {n}"})
    }
    runners.start(BACKSTOP_WEBHOOK_BACKOFF_SCALE="0")
    runners.start(BACKSTOP_WEBHOOK_BACKOFF_SCALE="0")

    requests = listening.wait_for(lambda got: len(got) >= len(sent))
    ids = [r["headers"]["x-backstop-delivery"] for r in requests]
    assert sorted(ids) == sorted(sent)  # each once
