"""Writing deliveries: one row per subscribed endpoint, in the transaction of the event.

Call ``enqueue`` inside the transaction that records the event, so that the event and
its deliveries commit (or vanish) together; the runners send them later (``sender``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.utils import timezone

from controlplane.notify.models import EVENT_KINDS, Delivery, WebhookEndpoint
from mutations.models import RuntimeEvent
from runs.models import RunStatus, WorkflowRun

# The run ends endpoints may hear of, by the run's terminal status.
RUN_END_KINDS = {
    RunStatus.COMPLETED: "run.completed",
    RunStatus.COMPENSATED: "run.compensated",
    RunStatus.COMPENSATION_FAILED: "run.compensation_failed",
}


def enqueue(org_id: str, kind: str, payload: dict[str, Any]) -> list[Delivery]:
    """Write a delivery of ``payload`` for each enabled endpoint of the org subscribed to
    ``kind``; return them (none when nobody listens)."""
    return enqueue_many([(org_id, kind, payload)])


def enqueue_many(events: Iterable[tuple[str, str, dict[str, Any]]]) -> list[Delivery]:
    """Write the deliveries of several events (org id, kind, payload) with one query for
    the endpoints and one INSERT."""
    events = list(events)
    for _, kind, _ in events:
        if kind not in EVENT_KINDS:
            raise ValueError(f"Unknown event kind {kind!r}; use one of {', '.join(EVENT_KINDS)}.")
    if not events:
        return []
    endpoints = list(
        WebhookEndpoint.objects.filter(
            org_id__in={org_id for org_id, _, _ in events}, enabled=True
        ).only("id", "org_id", "kinds")
    )
    if not endpoints:
        return []
    return Delivery.objects.bulk_create(
        new_delivery(endpoint, kind, payload)
        for org_id, kind, payload in events
        for endpoint in endpoints
        if endpoint.org_id == org_id and kind in endpoint.kinds
    )


def new_delivery(endpoint: WebhookEndpoint, kind: str, payload: dict[str, Any]) -> Delivery:
    """Return an unsaved delivery of ``payload`` to ``endpoint``, due now."""
    now = timezone.now()
    delivery = Delivery(
        org_id=endpoint.org_id, endpoint_id=endpoint.id, kind=kind, next_attempt_at=now
    )
    delivery.payload = {
        "delivery_id": delivery.id,
        "kind": kind,
        "org_id": endpoint.org_id,
        "occurred_at": now.isoformat(),
        **payload,
    }
    return delivery


def run_payload(event: RuntimeEvent) -> dict[str, Any]:
    """Return what an endpoint hears of a run's end, from its run_finished event."""
    return {
        "decision_id": event.decision_id,
        "run_id": event.run_id,
        "trace_id": event.trace_id,
        "event_id": event.event_id,
        "status": event.payload.get("terminal_status"),
        "failed_step_id": event.payload.get("failed_step_id"),
        "summary": event.delta_summary,
        "before_state_hash": event.before_state_hash,
        "after_state_hash": event.after_state_hash,
    }


def enqueue_run_ends(events: list[RuntimeEvent]) -> None:
    """Write the deliveries of the runs that ended in a runner's group (its run_finished
    events, before they are inserted): one query for the endpoints, one INSERT."""
    enqueue_many(
        (event.org_id, RUN_END_KINDS[status], run_payload(event))
        for event in events
        if (status := event.payload.get("terminal_status")) in RUN_END_KINDS
    )


def approval_payload(run: WorkflowRun, *, summary: str = "", **more: Any) -> dict[str, Any]:
    """Return what an endpoint hears of a held run: which decision, and where to decide."""
    return {
        "decision_id": run.decision_id,
        "run_id": run.run_id,
        "trace_id": run.trace_id,
        "workflow_id": run.workflow_id,
        "requested_by": run.requested_by,
        "summary": summary,
        "approval_url": f"{settings.BACKSTOP_PUBLIC_URL}/approvals/",
        **more,
    }
