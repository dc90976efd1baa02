"""Backstop's MCP server driven by the SDK's own client session: over stdio against
`manage.py mcp`, and over Streamable HTTP against a running web server process."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from django.test import Client
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from controlplane.access.tokens import create_token, revoke_token
from controlplane.models import Decision, Organization, Role, ServiceAccount, Workspace
from mutations.models import SandboxFault
from runs.keys import step_calls_prefix
from runs.models import WorkflowRun
from tests.aio import run_async
from tests.conftest import first_run_key, load_fixture, rebalance
from tests.platforms import Platforms
from tests.processes import ROOT, Runners, WebServer, server_env

pytestmark = pytest.mark.django_db(transaction=True)

Session = Callable[[str], Any]  # token -> an async context manager giving a ClientSession


def token_for(agent: ServiceAccount) -> str:
    return create_token(service_account=agent, created_by="test")[1]


def seed_scenario(agent: ServiceAccount) -> dict[str, Any]:
    """Return the seed decision, with the seed's fault planned: Google answers 429 to the
    credit until its retries run out."""
    document = load_fixture("seed_decision.json")
    SandboxFault.objects.create(
        org=agent.org,
        platform="google",
        key_prefix=step_calls_prefix(first_run_key(document), "credit_target_channel"),
        kind=SandboxFault.Kind.RATE_LIMIT,
        retry_after_seconds=120,
    )
    return document


@asynccontextmanager
async def stdio_session(token: str, env: dict[str, str] | None = None) -> AsyncIterator[Any]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["manage.py", "mcp"],
        env=server_env({"BACKSTOP_TOKEN": token, **(env or {})}),
        cwd=str(ROOT),
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def http_session(web: WebServer) -> Session:
    """Return a function opening an MCP client session to the web server's /mcp/."""

    @asynccontextmanager
    async def session(token: str) -> AsyncIterator[Any]:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            streamable_http_client(f"{web.url}/mcp/", http_client=http) as (read, write, *_),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session

    return session


def run(scenario: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return run_async(scenario())


async def call(session: Any, tool: str, **arguments: Any) -> Any:
    return await session.call_tool(tool, arguments)


# ---- the scenario, over either transport ------------------------------------------------


def seed_is_compensated(agent: ServiceAccount, runners: Runners, open_session: Session) -> None:
    document = seed_scenario(agent)
    runners.start()
    token = token_for(agent)

    async def scenario() -> tuple[Any, Any]:
        async with open_session(token) as session:
            proposed = await call(session, "propose_decision", decision=document)
            waited = await call(
                session, "wait_for_decision", decision_id=document["id"], timeout_seconds=60
            )
            return proposed, waited

    proposed, waited = run(scenario)
    assert not proposed.is_error, proposed.content
    assert proposed.structured_content["created"] is True
    assert proposed.structured_content["policy"]["outcome"] == "allow"
    assert proposed.structured_content["policy"]["deciding_rule_ids"] == ["allow-market-rebalance"]
    run_id = proposed.structured_content["run_id"]
    assert WorkflowRun.objects.get(decision_id=document["id"]).run_id == run_id

    answer = waited.structured_content
    assert answer["status"] == "compensated" and answer["terminal"] is True
    assert answer["count"] == 3
    assert [m["status"] for m in answer["mutations"]] == ["success", "failed", "rolled_back"]
    assert answer["before_state_hash"] == answer["after_state_hash"] is not None
    assert answer["net_change"] == "zero"


def held_decision_waits_for_a_person(
    agent: ServiceAccount, runners: Runners, open_session: Session, member: Any
) -> None:
    member("approver", Role.APPROVER)
    document = rebalance(amount=6000)  # the policy holds shifts above 5,000
    runners.start()
    token = token_for(agent)

    async def propose() -> tuple[Any, Any]:
        async with open_session(token) as session:
            proposed = await call(session, "propose_decision", decision=document)
            waited = await call(
                session, "wait_for_decision", decision_id=document["id"], timeout_seconds=0.5
            )
            return proposed, waited

    proposed, waited = run(propose)
    held = proposed.structured_content
    assert held["status"] == "awaiting_approval"
    assert held["pending"]["approval_url"] == "http://backstop.test/approvals/"
    assert waited.structured_content["status"] == "awaiting_approval"
    assert "call wait_for_decision" in waited.structured_content["pending"]["then"]

    dashboard = Client()
    dashboard.login(username="approver", password="pw")
    response = dashboard.post(f"/runs/{held['run_id']}/approve/", {"comment": "launch week"})
    assert response.status_code == 302

    async def wait() -> Any:
        async with open_session(token) as session:
            return await call(
                session, "wait_for_decision", decision_id=document["id"], timeout_seconds=60
            )

    finished = run(wait).structured_content
    assert finished["status"] == "completed" and finished["net_change"] == "applied"
    assert [m["status"] for m in finished["mutations"]] == ["success", "success"]


def stdio(token: str) -> Any:
    return stdio_session(token)


# ---- stdio ----------------------------------------------------------------------------------


def test_stdio_lists_built_in_plug_in_and_yaml_workflows_with_schemas(
    agent: ServiceAccount, platforms: Platforms
) -> None:
    token = token_for(agent)

    async def scenario() -> tuple[Any, Any]:
        async with stdio_session(token, platforms.env) as session:
            return await session.list_tools(), await call(session, "list_actions")

    listed, result = run(scenario)
    annotations = {tool.name: tool.annotations for tool in listed.tools}
    assert set(annotations) == {
        "list_actions",
        "propose_decision",
        "get_decision",
        "wait_for_decision",
        "list_my_decisions",
    }
    assert annotations["propose_decision"].destructive_hint is True
    assert annotations["propose_decision"].idempotent_hint is True
    assert annotations["get_decision"].read_only_hint is True
    schema = next(t for t in listed.tools if t.name == "propose_decision").input_schema
    action_types = {
        option["properties"]["type"]["const"]
        for option in schema["properties"]["decision"]["properties"]["action"]["oneOf"]
    }
    assert {"rebalance_spend", "onboard_contractor", "grant_access"} <= action_types

    platforms_known = result.structured_content["platforms"]
    assert {"meta", "google", "iam", "ticketing", "billing"} <= set(platforms_known)
    actions = {a["decision_type"]: a for a in result.structured_content["actions"]}
    assert {"rebalance_spend", "onboard_contractor", "grant_access"} <= set(actions)
    rebalance_schema = actions["rebalance_spend"]["action_schema"]
    assert rebalance_schema["properties"]["amount"] == {
        "type": "number",
        "multipleOf": 1e-06,
        "exclusiveMinimum": 0,
        "description": "per day, in currency",
    }
    assert rebalance_schema["properties"]["source_channel"]["enum"] == platforms_known
    assert "reason" not in rebalance_schema["required"]
    assert actions["rebalance_spend"]["policy_preview"]["outcome"] == "allow"
    assert actions["delete_campaign"]["reversibility"] == "irreversible"
    assert actions["delete_campaign"]["policy_preview"]["outcome"] == "deny"


def test_stdio_seed_decision_ends_compensated(agent: ServiceAccount, runners: Runners) -> None:
    seed_is_compensated(agent, runners, stdio)


def test_stdio_held_decision_completes_after_approval(
    agent: ServiceAccount, runners: Runners, member: Any
) -> None:
    held_decision_waits_for_a_person(agent, runners, stdio, member)


def test_malformed_proposal_names_the_field_and_stores_nothing(agent: ServiceAccount) -> None:
    negative = rebalance()
    negative["action"]["amount"] = -5
    unsummarized = rebalance()
    del unsummarized["summary"]
    token = token_for(agent)

    async def scenario() -> list[Any]:
        async with stdio_session(token) as session:
            return [
                await call(session, "propose_decision", decision=document)
                for document in (negative, unsummarized)
            ]

    results = run(scenario)
    assert [r.is_error for r in results] == [True, True]
    texts = [r.content[0].text for r in results]
    assert "action.amount: Must be a positive number." in texts[0]
    assert "summary: This field is required." in texts[1]
    assert not any("Traceback" in text for text in texts)
    assert not Decision.objects.exists()
    assert not WorkflowRun.objects.exists()


def test_revoked_token_is_refused(agent: ServiceAccount) -> None:
    token, text = create_token(service_account=agent, created_by="test")

    async def scenario() -> tuple[Any, Any]:
        async with stdio_session(text) as session:
            before = await call(session, "list_my_decisions")
            await asyncio.to_thread(revoke_token, token)
            return before, await call(session, "list_my_decisions")

    before, after = run(scenario)
    assert not before.is_error
    assert after.is_error and after.content[0].text.endswith("This token was revoked.")


def test_one_orgs_token_never_sees_another_orgs_decisions(
    agent: ServiceAccount, runners: Runners
) -> None:
    document = rebalance()
    token = token_for(agent)

    async def propose() -> Any:
        async with stdio_session(token) as session:
            return await call(session, "propose_decision", decision=document)

    assert not run(propose).is_error
    other_org = Organization.objects.create(name="Other", slug="other")
    workspace = Workspace.objects.create(org=other_org, name="Default", slug="default")
    other = ServiceAccount.objects.create(org=other_org, workspace=workspace, name="other-agent")
    other_token = token_for(other)

    async def look() -> tuple[Any, Any]:
        async with stdio_session(other_token) as session:
            return (
                await call(session, "get_decision", decision_id=document["id"]),
                await call(session, "list_my_decisions"),
            )

    got, listed = run(look)
    assert got.is_error
    assert f"no decision {document['id']} in your organization" in got.content[0].text
    assert listed.structured_content == {"decisions": [], "count": 0}


# ---- Streamable HTTP --------------------------------------------------------------------


def test_http_seed_decision_ends_compensated(
    agent: ServiceAccount, runners: Runners, web: WebServer
) -> None:
    seed_is_compensated(agent, runners, http_session(web))


def test_http_held_decision_completes_after_approval(
    agent: ServiceAccount, runners: Runners, web: WebServer, member: Any
) -> None:
    held_decision_waits_for_a_person(agent, runners, http_session(web), member)


def test_http_lists_built_in_plug_in_and_yaml_workflows(
    agent: ServiceAccount, platforms: Platforms, tmp_path: Path
) -> None:
    web = WebServer(tmp_path, env=platforms.env)
    token = token_for(agent)
    open_session = http_session(web)

    async def scenario() -> Any:
        async with open_session(token) as session:
            return await call(session, "list_actions")

    try:
        result = run(scenario)
    finally:
        web.process.stop()
    actions = {a["decision_type"]: a for a in result.structured_content["actions"]}
    assert {"rebalance_spend", "onboard_contractor", "grant_access"} <= set(actions)
    assert actions["grant_access"]["action_schema"]["properties"]["type"] == {
        "const": "grant_access"
    }


def test_http_refuses_a_revoked_token(agent: ServiceAccount, web: WebServer) -> None:
    token, text = create_token(service_account=agent, created_by="test")
    revoke_token(token)
    response = httpx2.post(
        f"{web.url}/mcp/",
        headers={"Authorization": f"Bearer {text}", "Accept": "application/json"},
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    )
    assert response.status_code == 401
    assert "invalid_token" in response.text


def test_fifty_concurrent_proposals_of_one_id_make_one_decision_and_one_run(
    agent: ServiceAccount, web: WebServer
) -> None:
    document = rebalance()
    token = token_for(agent)

    open_session = http_session(web)

    async def propose() -> Any:
        async with open_session(token) as session:
            return await call(session, "propose_decision", decision=document)

    async def scenario() -> list[Any]:
        return await asyncio.gather(*(propose() for _ in range(50)))

    results = run(scenario)
    assert [r.is_error for r in results] == [False] * 50
    assert sum(r.structured_content["created"] for r in results) == 1
    assert {r.structured_content["run_id"] for r in results} == {
        WorkflowRun.objects.get(decision_id=document["id"]).run_id
    }
    assert Decision.objects.filter(pk=document["id"]).count() == 1
