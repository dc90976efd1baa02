"""Managing webhook endpoints: subscribing, disabling, redelivering."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from controlplane.models import Organization
from controlplane.notify.models import EVENT_KINDS, Delivery, WebhookEndpoint


class EndpointInvalid(ValueError):
    """The endpoint cannot be saved as given; the message says what to change."""


def create_endpoint(
    *,
    org: Organization,
    url: str,
    kinds: list[str],
    created_by: str,
    description: str = "",
    format: str = WebhookEndpoint.Format.JSON,
) -> WebhookEndpoint:
    """Subscribe ``url`` to ``kinds``; the returned endpoint's secret is the one time
    anyone sees it."""
    unknown = sorted(set(kinds) - set(EVENT_KINDS))
    if unknown or not kinds:
        raise EndpointInvalid(
            f"Unknown event kinds {', '.join(unknown)}; choose from {', '.join(EVENT_KINDS)}."
            if unknown
            else "Subscribe to at least one event kind."
        )
    if not url.startswith(("http://", "https://")):
        raise EndpointInvalid("The URL must start with http:// or https://.")
    if format not in WebhookEndpoint.Format.values:
        raise EndpointInvalid("The format is json or slack.")
    return WebhookEndpoint.objects.create(
        org=org,
        url=url,
        kinds=[k for k in EVENT_KINDS if k in kinds],
        created_by=created_by,
        description=description,
        format=format,
    )


def set_enabled(endpoint: WebhookEndpoint, *, enabled: bool) -> WebhookEndpoint:
    """Turn an endpoint on or off; a disabled one gets no new deliveries."""
    endpoint.enabled = enabled
    endpoint.save(update_fields=["enabled"])
    return endpoint


def redeliver(delivery: Delivery) -> Delivery:
    """Send a delivery again, with the same id, as soon as a runner is free."""
    with transaction.atomic():
        now = timezone.now()
        Delivery.objects.filter(pk=delivery.pk).update(
            status=Delivery.Status.PENDING, attempts=0, next_attempt_at=now, delivered_at=None
        )
        delivery.refresh_from_db()
    return delivery
