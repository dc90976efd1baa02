"""Webhook endpoints an organization subscribes, and the outbox of their deliveries."""

from __future__ import annotations

import secrets
from typing import ClassVar

from django.db import models
from ulid import ULID

# The event kinds an endpoint may subscribe to.
EVENT_KINDS = (
    "approval.requested",
    "approval.decided",
    "run.completed",
    "run.compensated",
    "run.compensation_failed",
    "drill.failed",
    "chain.broken",
)


def _endpoint_id() -> str:
    return f"whk_{ULID()}"


def _delivery_id() -> str:
    return f"dlv_{ULID()}"


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


class WebhookEndpoint(models.Model):
    """A URL an organization wants told about some event kinds. The secret signs each
    delivery; it is shown once, at creation, and kept to sign (never shown again)."""

    class Format(models.TextChoices):
        JSON = "json", "JSON"
        SLACK = "slack", "Slack incoming webhook"

    id = models.CharField(primary_key=True, max_length=32, default=_endpoint_id)
    org = models.ForeignKey("controlplane.Organization", on_delete=models.CASCADE)
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    kinds = models.JSONField(default=list, help_text="Event kinds subscribed to.")
    format = models.CharField(max_length=8, choices=Format.choices, default=Format.JSON)
    secret = models.CharField(max_length=100, default=new_secret, editable=False)
    enabled = models.BooleanField(default=True)
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes: ClassVar = [models.Index(fields=["org", "enabled"], name="webhook_org_enabled")]

    def __str__(self) -> str:
        return self.description or self.url


class Delivery(models.Model):
    """One event for one endpoint: written with the event, sent by the runners until the
    endpoint answers 2xx (at least once, always with this id)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"

    id = models.CharField(primary_key=True, max_length=32, default=_delivery_id)
    org = models.ForeignKey("controlplane.Organization", on_delete=models.CASCADE)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    kind = models.CharField(max_length=40)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    last_response_code = models.PositiveIntegerField(null=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True)

    class Meta:
        indexes: ClassVar = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
            models.Index(fields=["endpoint", "-created_at"], name="delivery_endpoint_recent"),
        ]

    def __str__(self) -> str:
        return self.id


__all__ = ["EVENT_KINDS", "Delivery", "WebhookEndpoint"]
