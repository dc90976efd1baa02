"""How long a runner's hold on a run lasts before another runner may take it."""

from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from mutations.rows import table


def lease_seconds() -> timedelta:
    return timedelta(seconds=settings.BACKSTOP_LEASE_SECONDS)


def rollback_lock_seconds() -> timedelta:
    return timedelta(seconds=settings.BACKSTOP_ROLLBACK_LOCK_SECONDS)


def renew_leases(worker_id: str) -> None:
    """Extend the lease of every run held by ``worker_id`` (or one of its threads).

    Rows another transaction has locked are skipped, not waited for: that is this
    runner's own group commit, which renews them itself (or a claim of a run whose lease
    has already run out). Waiting would let the two lock the same rows in different
    orders, and deadlock.
    """
    from runs.models import WorkflowRun

    runs = table(WorkflowRun)
    expires = connection.ops.adapt_datetimefield_value(timezone.now() + lease_seconds())
    held = "substr(leased_by, 1, length(%s)) = %s"
    if connection.features.has_select_for_update_skip_locked:
        held = f"run_id IN (SELECT run_id FROM {runs} WHERE {held} FOR UPDATE SKIP LOCKED)"
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {runs} SET lease_expires_at = %s WHERE {held}",
            [expires, worker_id, worker_id],
        )
