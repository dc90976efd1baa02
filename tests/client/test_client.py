"""backstop_client against a live web server process (uvicorn on the test database) and
real runner processes: the MCP tests' scenario, and the typed errors of 400, 401, 403,
404, 409 and 429, with the blocking and the asyncio client alike."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.test import Client as Dashboard

from backstop_client import (
    AsyncClient,
    BackstopError,
    Client,
    Conflict,
    Decision,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    Unauthorized,
)
from controlplane.access.tokens import create_token
from controlplane.models import Decision as StoredDecision
from controlplane.models import Role, ServiceAccount
from runs.models import WorkflowRun
from tests.aio import run_async
from tests.conftest import rebalance
from tests.controlplane.test_mcp import seed_scenario
from tests.processes import ROOT, Runners, WebServer

pytestmark = pytest.mark.django_db(transaction=True)

POLL = 0.1  # seconds between polls: 600 a minute at most, the agents' default rate limit


def token_for(agent: ServiceAccount) -> str:
    return create_token(service_account=agent, created_by="test")[1]


class Blocking:
    """An AsyncClient driven from a test's plain code, on an event loop of its own in a
    thread of its own (the browser tests' Playwright keeps one running in the main
    thread), so that one scenario serves both clients."""

    def __init__(self, url: str, token: str) -> None:
        self.thread = ThreadPoolExecutor(max_workers=1)
        self.loop = asyncio.Runner()
        self.client = AsyncClient(url, token)

    def _run(self, coroutine: Any) -> Any:
        return self.thread.submit(self.loop.run, coroutine).result()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        return lambda *args, **kwargs: self._run(method(*args, **kwargs))

    def close(self) -> None:
        self._run(self.client.aclose())
        self.thread.submit(self.loop.close).result()
        self.thread.shutdown()


Connect = Callable[[str, str], AbstractContextManager[Any]]


@pytest.fixture(params=["sync", "async"])
def connect(request: pytest.FixtureRequest) -> Connect:
    """Return a function opening a client (the blocking one, or the asyncio one driven
    from plain code) to a URL with a token."""

    @contextmanager
    def opened(url: str, token: str) -> Iterator[Any]:
        if request.param == "sync":
            with Client(url, token) as client:
                yield client
            return
        driven = Blocking(url, token)
        try:
            yield driven
        finally:
            driven.close()

    return opened


def assert_seed_proposed(proposed: Decision, document: dict[str, Any]) -> None:
    assert proposed.id == document["id"] and proposed.created is True
    assert proposed.policy is not None and proposed.policy.outcome == "allow"
    assert proposed.policy.deciding_rule_ids == ("allow-market-rebalance",)
    assert proposed.run_id == WorkflowRun.objects.get(decision_id=document["id"]).run_id
    assert proposed.mutations == ()  # the answer to a proposal carries no log entries


def assert_seed_compensated(done: Decision) -> None:
    assert done.status == "compensated" and done.terminal
    assert [m.status for m in done.mutations] == ["success", "failed", "rolled_back"]
    debit, credit, undo = done.mutations
    assert undo.compensates_mutation_id == debit.mutation_id
    assert undo.actor_type == "compensation" and undo.platform == debit.platform == "meta"
    assert credit.error_message is not None and "429" in credit.error_message
    assert done.before_state_hash == done.after_state_hash is not None
    assert done.net_change == "zero"
    assert done.run is not None and done.run.failed_step_id == "credit_target_channel"


# ---- the MCP tests' scenario ----------------------------------------------------------------


def test_seed_decision_ends_compensated(
    agent: ServiceAccount, runners: Runners, web: WebServer
) -> None:
    document = seed_scenario(agent)
    runners.start()
    with Client(web.url, token_for(agent)) as backstop:
        actions = {a.decision_type: a for a in backstop.list_actions()}
        proposed = backstop.propose(document)
        done = backstop.wait(proposed.id, timeout=60, poll=POLL)
        again = backstop.propose(document)

    rebalance_spend = actions["rebalance_spend"]
    assert rebalance_spend.steps == ("debit_source_channel", "credit_target_channel")
    assert {"type", "source_channel", "amount"} <= set(rebalance_spend.required_fields)
    assert rebalance_spend.policy_preview is not None
    assert rebalance_spend.policy_preview.outcome == "allow"
    assert actions["delete_campaign"].reversibility == "irreversible"
    assert_seed_proposed(proposed, document)
    assert_seed_compensated(done)
    assert again.created is False and again.run_id == proposed.run_id
    assert again.status == "compensated"


def test_seed_decision_ends_compensated_async(
    agent: ServiceAccount, runners: Runners, web: WebServer
) -> None:
    document = seed_scenario(agent)
    runners.start()
    token = token_for(agent)

    async def scenario() -> tuple[list[Any], Decision, Decision]:
        async with AsyncClient(web.url, token) as backstop:
            actions = await backstop.list_actions()
            proposed = await backstop.propose(document)
            return actions, proposed, await backstop.wait(proposed.id, timeout=60, poll=POLL)

    actions, proposed, done = run_async(scenario())
    assert "rebalance_spend" in {a.decision_type for a in actions}
    assert_seed_proposed(proposed, document)
    assert_seed_compensated(done)


def test_held_decision_waits_for_a_person_then_completes(
    agent: ServiceAccount, runners: Runners, web: WebServer, member: Any, connect: Connect
) -> None:
    member("approver", Role.APPROVER)
    document = rebalance(amount=6000)  # the policy holds shifts above 5,000
    runners.start()
    with connect(web.url, token_for(agent)) as backstop:
        held = backstop.propose(document)
        waited = backstop.wait(held.id, timeout=0.5, poll=POLL)
        # A real 403 the API gives a token: an agent may not approve its own held run.
        with pytest.raises(Forbidden) as refused:
            backstop.request("POST", f"/api/v1/runs/{held.run_id}/approve/", json={})

        assert held.status == "awaiting_approval" and held.awaiting_approval
        assert not held.terminal and held.net_change == "pending"
        assert held.policy is not None and held.policy.outcome == "require_human"
        assert held.policy.deciding_rule_ids == ("large-shift-needs-human",)
        assert waited.status == "awaiting_approval" and not waited.terminal
        assert refused.value.status == 403 and refused.value.code == "permission_denied"
        assert "approvers" in refused.value.message

        dashboard = Dashboard()
        dashboard.login(username="approver", password="pw")
        response = dashboard.post(f"/runs/{held.run_id}/approve/", {"comment": "launch week"})
        assert response.status_code == 302
        finished = backstop.wait(held.id, timeout=60, poll=POLL)

    assert finished.status == "completed" and finished.net_change == "applied"
    assert [m.status for m in finished.mutations] == ["success", "success"]


# ---- typed errors ---------------------------------------------------------------------------


def test_refusals_raise_typed_errors(
    agent: ServiceAccount, web: WebServer, connect: Connect
) -> None:
    negative = rebalance()
    negative["action"]["amount"] = -5
    unsummarized = rebalance()
    del unsummarized["summary"]
    stored = rebalance()
    changed = {**stored, "action": {**stored["action"], "amount": 900}}

    with connect(web.url, token_for(agent)) as backstop:
        with pytest.raises(Invalid) as invalid:
            backstop.propose(negative)
        with pytest.raises(Invalid) as missing:
            backstop.propose(unsummarized)
        assert not StoredDecision.objects.exists()

        backstop.propose(stored)
        with pytest.raises(Conflict) as conflict:
            backstop.propose(changed)
        with pytest.raises(NotFound) as unknown:
            backstop.get("dec_00000000000000000000000000")

    with connect(web.url, "bst_000000000000_nothing") as stranger, pytest.raises(Unauthorized):
        stranger.list_actions()

    assert invalid.value.status == 400 and invalid.value.code == "invalid"
    assert invalid.value.fields == {"action.amount": ["Must be a positive number."]}
    assert "summary" in missing.value.fields
    assert conflict.value.status == 409 and conflict.value.code == "conflict"
    assert "already received with a different payload" in conflict.value.message
    assert list(conflict.value.fields) == ["id"]
    assert unknown.value.status == 404
    assert StoredDecision.objects.get().action["amount"] == 800  # the first payload stands
    for error in (invalid, conflict, unknown):
        assert isinstance(error.value, BackstopError)


def test_rate_limit_raises_with_retry_after(
    agent: ServiceAccount, tmp_path: Path, connect: Connect
) -> None:
    server = WebServer(tmp_path, env={"BACKSTOP_AGENT_RATE": "3/min"})
    try:
        with connect(server.url, token_for(agent)) as backstop:
            for _ in range(3):
                backstop.list_actions()
            with pytest.raises(RateLimited) as limited:
                backstop.list_actions()
            # wait() waits out a limit that lifts in time; this one outlasts its timeout.
            with pytest.raises(RateLimited):
                backstop.wait("dec_00000000000000000000000000", timeout=1, poll=POLL)
    finally:
        server.process.stop()

    assert limited.value.status == 429 and limited.value.code == "throttled"
    assert limited.value.retry_after is not None and 0 < limited.value.retry_after <= 60


# ---- on its own -----------------------------------------------------------------------------


def test_imports_without_django(tmp_path: Path) -> None:
    """Python started isolated (-I: no PYTHONPATH, no current directory) and with an empty
    environment imports the client and nothing of Django or of Backstop's server."""
    code = (
        "import json, sys\n"
        "import backstop_client, backstop_client.client, backstop_client.errors\n"
        "print(json.dumps(sorted({name.split('.')[0] for name in sys.modules})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", code],
        cwd=tmp_path,
        env={},
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(json.loads(done.stdout))
    assert "backstop_client" in loaded and "httpx" in loaded
    server_side = {"django", "rest_framework", "controlplane", "runs", "mutations", "mcp"}
    assert not loaded & server_side


def test_package_depends_on_httpx_only() -> None:
    project = tomllib.loads((ROOT / "backstop_client" / "pyproject.toml").read_text())
    assert [d.split(">")[0] for d in project["project"]["dependencies"]] == ["httpx"]
