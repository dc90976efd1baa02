"""Outbound notifications: webhook endpoints, their outbox of deliveries, the sender."""

from __future__ import annotations

from typing import Any


def enqueue(org_id: str, kind: str, payload: dict[str, Any]) -> list[Any]:
    """Write a delivery of ``payload`` for each enabled endpoint of the org subscribed to
    ``kind``, in the caller's transaction (see ``controlplane.notify.outbox``)."""
    from controlplane.notify.outbox import enqueue as write  # the models load after this package

    return write(org_id, kind, payload)
