"""Backstop's MCP server: the tools an agent is given for every action that changes a real
system. Built on the official SDK; the tools call ``controlplane.agents.tools``.

One server, two ways in: stdio (``manage.py mcp``, the token from ``BACKSTOP_TOKEN``) and
Streamable HTTP at ``/mcp/`` (``controlplane.asgi``, the token from each request's
``Authorization: Bearer`` header). Either way the token is checked again on every call, so a
revoked token stops working at once.
"""

import time
from collections.abc import Callable
from typing import Annotated, Any

import anyio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import AnyHttpUrl, Field

from controlplane.access.tokens import AgentPrincipal, TokenRefused, principal_for
from controlplane.agents import tools
from runs.workflows.action_schema import decision_schema
from runs.workflows.registry import all_workflows

WAIT_DEFAULT_SECONDS = 30
WAIT_MAX_SECONDS = 120
WAIT_POLL_SECONDS = 0.25

INSTRUCTIONS = """\
Backstop gates, executes, undoes and proves actions that change real systems (ad budgets,
access, billing). Call list_actions to learn the decision types you may propose and their
action fields. propose_decision submits one: the policy allows it (it runs), denies it, or
holds it for a person to approve. Then wait_for_decision (or get_decision) tells you how it
ended: completed, or compensated (every change undone in reverse order, with equal
before/after state hashes as the proof). Resubmitting the same decision id is safe: you get
the stored decision back. You cannot approve, reject or roll back: people do that."""

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)


def build_server(token_text: Callable[[], str | None]) -> MCPServer:
    """Return the MCP server whose tools act as the agent whose token ``token_text`` gives
    (called on every tool call)."""
    server = MCPServer(
        name="backstop",
        title="Backstop",
        instructions=INSTRUCTIONS,
        token_verifier=BackstopTokens(),
        auth=_auth_settings(),
        log_level="WARNING",
    )

    async def principal() -> AgentPrincipal:
        text = token_text()
        if not text:
            raise ToolError("No token: set BACKSTOP_TOKEN to an agent token (bst_...).")
        try:
            return await _sync(principal_for)(text)
        except TokenRefused as refused:
            raise ToolError(str(refused)) from None

    async def call[T](function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await _sync(function)(await principal(), *args, **kwargs)
        except tools.ToolRefused as refused:
            raise ToolError(str(refused)) from None

    base_url = settings.BACKSTOP_PUBLIC_URL
    decision_type = Annotated[
        dict[str, Any],
        Field(
            description="The decision document: list_actions gives each type's action fields.",
            json_schema_extra=decision_schema(all_workflows()),
        ),
    ]
    decision_id_type = Annotated[
        str, Field(description="The decision's id (dec_...).", pattern=r"^dec_[0-9A-Z]{26}$")
    ]

    @server.tool(annotations=READ_ONLY)
    async def list_actions() -> dict[str, Any]:
        """List the decision types you may propose: each one's action fields (a JSON
        Schema), its steps, whether it can be undone, and what the active policy does with
        typical values (allow, deny, or require_human: held for a person)."""
        return await call(tools.list_actions)

    @server.tool(
        annotations=ToolAnnotations(
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=True,
            open_world_hint=True,
        )
    )
    async def propose_decision(decision: decision_type) -> dict[str, Any]:
        """Propose a decision that changes a real system. Backstop validates it, the policy
        gate allows, denies or holds it, and an allowed run starts at once. Returns the
        decision id, the policy outcome with the rules that decided it, and the run id; a
        held decision returns `pending` with the approval page: call wait_for_decision
        later. The same id with the same content returns the stored decision (safe to
        retry); the same id with other content is refused (conflict)."""
        return await call(tools.propose_decision, decision, base_url)

    @server.tool(annotations=READ_ONLY)
    async def get_decision(decision_id: decision_id_type) -> dict[str, Any]:
        """Return where a decision stands: its status and run status, the Mutation Log
        entries (each change made and undone), the before/after state hashes and the
        net-change verdict (zero: everything undone; applied: completed)."""
        return await call(tools.get_decision, decision_id, base_url)

    @server.tool(annotations=READ_ONLY)
    async def wait_for_decision(
        decision_id: decision_id_type,
        timeout_seconds: Annotated[
            float, Field(ge=0, le=WAIT_MAX_SECONDS, description="At most 120; default 30.")
        ] = WAIT_DEFAULT_SECONDS,
    ) -> dict[str, Any]:
        """Wait until the decision's run ends (completed, compensated, failed, rejected...)
        or the timeout passes, then return what get_decision returns. A decision held for
        a person comes back as `pending` when the time is up: call again later."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            answer = await call(tools.get_decision, decision_id, base_url)
            if tools.is_settled(answer) or time.monotonic() >= deadline:
                if not tools.is_settled(answer):
                    answer.setdefault("pending", {})["then"] = (
                        f"not ended yet: call wait_for_decision with decision_id {decision_id}"
                    )
                return answer
            await anyio.sleep(min(WAIT_POLL_SECONDS, max(deadline - time.monotonic(), 0)))

    @server.tool(annotations=READ_ONLY)
    async def list_my_decisions(
        status: Annotated[
            str, Field(description="Only this status, e.g. compensated or awaiting_approval.")
        ] = "",
        decision_type: Annotated[str, Field(description="Only this decision type.")] = "",
        limit: Annotated[int, Field(ge=1, le=tools.RECENT_LIMIT)] = 20,
    ) -> dict[str, Any]:
        """List the decisions you proposed, newest first, optionally of one status or
        type."""
        return await call(
            tools.list_my_decisions, status=status, decision_type=decision_type, limit=limit
        )

    return server


def http_token() -> str | None:
    """Return the bearer token of the HTTP request being served."""
    access = get_access_token()
    return access.token if access else None


class BackstopTokens:
    """Check the bearer token of each HTTP request against the agents' API tokens."""

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            principal = await _sync(principal_for)(token)
        except TokenRefused:
            return None
        return AccessToken(token=token, client_id=principal.service_account.actor, scopes=[])


def _auth_settings() -> AuthSettings:
    base = settings.BACKSTOP_PUBLIC_URL
    return AuthSettings(
        issuer_url=AnyHttpUrl(base),
        resource_server_url=AnyHttpUrl(f"{base}/mcp/"),
        validate_token_resource=False,  # our tokens are for this server alone
    )


def _sync[**P, T](function: Callable[P, T]) -> Callable[P, Any]:
    """Run a function that uses the ORM in a worker thread, with fresh connections."""

    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        close_old_connections()
        try:
            return function(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(run, thread_sensitive=False)
