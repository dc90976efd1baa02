"""Writing evidence: runtime events. Call these inside the transaction of the change they record."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from django.utils import timezone

from mutations.models import RuntimeEvent
from mutations.rows import insert_rows


class Surface(StrEnum):
    """Where the change an event records came from; stored as the event's ``surface``."""

    DECISION_RUNTIME = "decision_runtime"  # the runners and their periodic tasks
    API = "api"
    CLI = "cli"
    DASHBOARD = "dashboard"
    DRILL = "drill"
    BENCH = "bench"
    MCP = "mcp"  # an agent through the MCP tools


def new_event(
    *,
    org_id: str,
    kind: str,
    trace_id: str,
    surface: Surface,
    workspace_id: str | None = None,
    user_id: int | None = None,
    decision_id: str | None = None,
    run_id: str | None = None,
    policy_ids: list[str] | None = None,
    before_state_hash: str | None = None,
    after_state_hash: str | None = None,
    delta_summary: str = "",
    payload: dict[str, Any] | None = None,
) -> RuntimeEvent:
    """Return an unsaved event; save it, or bulk-insert several, in the change's transaction."""
    return RuntimeEvent(
        org_id=org_id,
        workspace_id=workspace_id,
        user_id=user_id,
        decision_id=decision_id,
        run_id=run_id,
        kind=kind,
        trace_id=trace_id,
        surface=surface,
        timestamp=timezone.now(),
        policy_ids=policy_ids or [],
        before_state_hash=before_state_hash,
        after_state_hash=after_state_hash,
        delta_summary=delta_summary,
        payload=payload or {},
    )


def record_event(**fields: Any) -> RuntimeEvent:
    """Append one event to the event-trace plane."""
    event = new_event(**fields)
    insert_rows(RuntimeEvent, [event])
    return event
