"""How long a runner's hold on a run lasts before another runner may take it."""

from datetime import timedelta

from django.conf import settings


def lease_seconds() -> timedelta:
    return timedelta(seconds=settings.BACKSTOP_LEASE_SECONDS)


def rollback_lock_seconds() -> timedelta:
    return timedelta(seconds=settings.BACKSTOP_ROLLBACK_LOCK_SECONDS)
