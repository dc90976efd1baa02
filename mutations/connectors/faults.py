"""Planned faults: the failures a drill (or a test) asks a sandbox platform to have.

A fault is a row naming a platform, a kind and the idempotency-key prefix it applies to;
each call consumes one of its ``remaining`` calls. The connector of a sandbox platform
takes the fault before the call leaves, so any platform marked ``sandbox`` can be
drilled, simulated or real: an ambiguous fault lets the call through and loses its answer.
"""

from __future__ import annotations

import time

from django.db import connection
from django.db.models import F

from mutations.connectors.base import (
    AmbiguousOutcome,
    FatalError,
    PlatformError,
    PlatformTimeout,
    RateLimited,
    TransientError,
)
from mutations.models import SandboxFault
from mutations.rows import table


def take_fault(org_id: str, platform: str, key: str, mutation_type: str) -> SandboxFault | None:
    """Return the first planned fault for this call, consuming one of its calls."""
    planned = _planned_ids(org_id, platform, key, mutation_type)
    if not planned:  # the common case, asked in one plain statement
        return None
    for fault in SandboxFault.objects.filter(pk__in=planned).order_by("id"):
        if fault.remaining is None:
            return fault
        spent = SandboxFault.objects.filter(pk=fault.pk, remaining__gt=0).update(
            remaining=F("remaining") - 1
        )
        if spent:
            return fault
    return None


def planned(org_id: str, platform: str, key: str, mutation_type: str) -> tuple[str, list[str]]:
    """Return the SQL that selects the ids of the faults planned for this call (its
    platform, its change or any, a key prefix that ``key`` starts with), and its
    parameters."""
    return (
        f"SELECT id FROM {table(SandboxFault)} WHERE org_id = %s AND platform = %s "
        "AND (mutation_type = '' OR mutation_type = %s) "
        "AND substr(%s, 1, length(key_prefix)) = key_prefix",
        [org_id, platform, mutation_type, key],
    )


def _planned_ids(org_id: str, platform: str, key: str, mutation_type: str) -> list[int]:
    with connection.cursor() as cursor:
        cursor.execute(*planned(org_id, platform, key, mutation_type))
        return [row[0] for row in cursor.fetchall()]


def fault_error(fault: SandboxFault, api: str, timeout: float) -> PlatformError | None:
    """Return the error the fault stands for (after its delay), or None for a slow call
    that still answers in time. ``api`` is the name the platform's errors carry."""
    if fault.delay_ms:
        time.sleep(min(fault.delay_ms / 1000, timeout))
    match fault.kind:
        case SandboxFault.Kind.RATE_LIMIT:
            retry_after = fault.retry_after_seconds or 60
            return RateLimited(
                f"{api}: rate_limit_exceeded (code 429, retry_after={retry_after}s)",
                retry_after=retry_after,
            )
        case SandboxFault.Kind.TRANSIENT:
            return TransientError(f"{api}: backend_error (code 503)")
        case SandboxFault.Kind.TIMEOUT:
            return PlatformTimeout(f"{api}: deadline_exceeded after {timeout:g}s")
        case SandboxFault.Kind.FATAL:
            return FatalError(f"{api}: invalid_request (code 400)")
        case SandboxFault.Kind.AMBIGUOUS:
            return AmbiguousOutcome(f"{api}: connection reset after the request was sent")
        case SandboxFault.Kind.SLOW:
            if fault.delay_ms / 1000 > timeout:
                return PlatformTimeout(f"{api}: deadline_exceeded after {timeout:g}s")
            return None
    raise ValueError(f"Unknown sandbox fault kind {fault.kind!r}")
