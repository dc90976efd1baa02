"""Sending deliveries, from the runners' periodic tasks.

A runner claims due deliveries in a short transaction (``FOR UPDATE SKIP LOCKED`` where
the database has it) and pushes their next attempt past the claim's lease, so a runner
killed while sending leaves them due again once the lease runs out: at least once,
always with the same ``X-Backstop-Delivery`` id. It posts them outside any transaction
and records each outcome; a failed attempt is tried again with capped exponential
backoff, up to ``MAX_ATTEMPTS``.

Each request is signed: ``X-Backstop-Signature: t=<unix seconds>,v1=<hex>``, the hex
HMAC-SHA256, keyed with the endpoint's secret, of ``"<t>.<body>"``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from controlplane.notify.models import Delivery, WebhookEndpoint
from controlplane.notify.slack import slack_message

logger = logging.getLogger("controlplane.notify")

TIMEOUT_SECONDS = 5.0
MAX_ATTEMPTS = 10
BACKOFF_CAP_SECONDS = 60.0
SENDERS = 4
# Claimed at most this many at once: the last one waits for two rounds of sends (10 s at
# worst), well inside the claim's lease.
CLAIM_BATCH = 2 * SENDERS
USER_AGENT = "Backstop-Webhooks/1"

_senders = ThreadPoolExecutor(max_workers=SENDERS, thread_name_prefix="webhooks")
_in_flight: set[Future[None]] = set()


def claim_seconds() -> float:
    """How long a claimed delivery stays with its runner before another may send it."""
    return float(settings.BACKSTOP_WEBHOOK_CLAIM_SECONDS)


def backoff(attempts: int) -> timedelta:
    """Return the wait after ``attempts`` failed attempts: 1, 2, 4 ... up to 60 s (scaled
    by ``BACKSTOP_WEBHOOK_BACKOFF_SCALE``, 0 in tests)."""
    scale = float(settings.BACKSTOP_WEBHOOK_BACKOFF_SCALE)
    return timedelta(seconds=min(BACKOFF_CAP_SECONDS, 2.0 ** max(attempts - 1, 0)) * scale)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """Return the ``X-Backstop-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def body_of(delivery: Delivery, endpoint: WebhookEndpoint) -> bytes:
    document: dict[str, Any] = delivery.payload
    if endpoint.format == WebhookEndpoint.Format.SLACK:
        document = slack_message(delivery.payload)
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


def deliver_due(limit: int = CLAIM_BATCH) -> int:
    """Claim the deliveries that are due and hand them to this process's senders, so a
    slow endpoint never holds up the runner's loop; return how many were claimed."""
    _in_flight.difference_update([f for f in _in_flight if f.done()])
    room = limit - len(_in_flight)
    if room <= 0:
        return 0
    claimed = _claim(room)
    _in_flight.update(_senders.submit(_send_and_close, delivery) for delivery in claimed)
    return len(claimed)


def _claim(limit: int) -> list[Delivery]:
    """Take up to ``limit`` due deliveries for this runner: count the attempt and move the
    next one past the claim's lease, in one short transaction."""
    now = timezone.now()
    with transaction.atomic():
        # A disabled endpoint's deliveries wait for it to be enabled again.
        due = Delivery.objects.filter(
            status=Delivery.Status.PENDING, next_attempt_at__lte=now, endpoint__enabled=True
        )
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True, of=("self",))
        claimed = list(due.select_related("endpoint").order_by("next_attempt_at")[:limit])
        if claimed:
            Delivery.objects.filter(pk__in=[d.pk for d in claimed]).update(
                attempts=F("attempts") + 1,
                next_attempt_at=now + timedelta(seconds=claim_seconds()),
            )
    for delivery in claimed:
        delivery.attempts += 1
    return claimed


def _send_and_close(delivery: Delivery) -> None:
    try:
        _send(delivery)
    except Exception:
        logger.exception("delivery=%s could not be sent; it is due again later", delivery.id)
    finally:
        connection.close()  # this sender thread's own connection


def _send(delivery: Delivery) -> None:
    endpoint = delivery.endpoint
    body = body_of(delivery, endpoint)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Backstop-Delivery": delivery.id,
        "X-Backstop-Event": delivery.kind,
        "X-Backstop-Signature": sign(endpoint.secret, body, int(time.time())),
    }
    code: int | None = None
    error = ""
    try:
        answer = httpx.post(endpoint.url, content=body, headers=headers, timeout=TIMEOUT_SECONDS)
        code = answer.status_code
        if not answer.is_success:
            error = f"HTTP {code}: {answer.text[:200]}"
    except httpx.HTTPError as failure:
        error = f"{type(failure).__name__}: {failure}"[:500]
    _record(delivery, code=code, error=error)


def _record(delivery: Delivery, *, code: int | None, error: str) -> None:
    """Save the attempt's outcome, unless another runner took the delivery meanwhile."""
    now = timezone.now()
    fields: dict[str, Any] = {"last_response_code": code, "last_error": error}
    if not error:
        fields |= {"status": Delivery.Status.DELIVERED, "delivered_at": now}
    elif delivery.attempts >= MAX_ATTEMPTS:
        fields |= {"status": Delivery.Status.FAILED}
    else:
        fields |= {"next_attempt_at": now + backoff(delivery.attempts)}
    Delivery.objects.filter(
        pk=delivery.pk, status=Delivery.Status.PENDING, attempts=delivery.attempts
    ).update(**fields)
    if error:
        logger.warning(
            "delivery=%s kind=%s attempt=%d failed: %s",
            delivery.id,
            delivery.kind,
            delivery.attempts,
            error,
        )
