"""Telling endpoints that an org's Mutation Log chain is broken.

The chain verifier (``mutations.chain``) cannot import the control plane, and records a
break on the org's ``LogHead``. That record is durable, so the runners derive the
deliveries from it: once per endpoint and break, whoever marked it (the periodic
verifier or ``manage.py verifylog``).
"""

from __future__ import annotations

from django.db import transaction

from controlplane.notify.models import Delivery, WebhookEndpoint
from controlplane.notify.outbox import new_delivery
from mutations.models import LogHead

KIND = "chain.broken"


def notify_broken_chains() -> int:
    """Write a delivery for each broken chain an endpoint has not heard of; return how many."""
    written = 0
    for head in LogHead.objects.filter(broken_at__isnull=False):
        with transaction.atomic():
            # Locked, so that two runners write one delivery per endpoint and break.
            endpoints = WebhookEndpoint.objects.select_for_update().filter(
                org_id=head.org_id, enabled=True
            )
            told = set(
                Delivery.objects.filter(
                    org_id=head.org_id, kind=KIND, payload__broken_at=head.broken_at
                ).values_list("endpoint_id", flat=True)
            )
            payload = {"broken_at": head.broken_at, "reason": head.broken_reason}
            rows = [
                new_delivery(endpoint, KIND, payload)
                for endpoint in endpoints
                if KIND in endpoint.kinds and endpoint.id not in told
            ]
            Delivery.objects.bulk_create(rows)
            written += len(rows)
    return written
