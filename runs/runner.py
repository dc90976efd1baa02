"""The runner's loop: claim due runs in a short transaction, drive them, release them."""

from __future__ import annotations

import logging
import os
import socket
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Min
from django.utils import timezone
from ulid import ULID

from runs.engine import LEASE_SECONDS, Engine
from runs.exceptions import LeaseLost
from runs.models import WorkflowRun

logger = logging.getLogger("runs.runner")

CLAIM_BATCH = 10
ERROR_BACKOFF_SECONDS = 5


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{str(ULID())[-6:]}"


class Worker:
    def __init__(self, *, worker_id: str | None = None, batch_size: int = CLAIM_BATCH) -> None:
        self.worker_id = worker_id or default_worker_id()
        self.batch_size = batch_size
        self.engine = Engine(worker_id=self.worker_id)
        self.stopping = False

    def run(self, *, until_idle: bool = False) -> int:
        """Process runs until stopped (or, with until_idle, until none is left to do).

        Return the number of runs driven.
        """
        driven = 0
        while not self.stopping:
            close_old_connections()
            claimed = self.claim()
            for run_id in claimed:
                self.process(run_id)
            driven += len(claimed)
            if claimed:
                continue
            next_due = self.next_due()
            if until_idle and next_due is None:
                break
            self.sleep_until(next_due)
        return driven

    def claim(self) -> list[str]:
        """Lease up to batch_size due runs to this worker and return their ids."""
        now = timezone.now()
        with transaction.atomic():
            due = WorkflowRun.objects.claimable(now).order_by("next_wake_at")
            if connection.features.has_select_for_update_skip_locked:
                due = due.select_for_update(skip_locked=True)
            ids = list(due.values_list("run_id", flat=True)[: self.batch_size])
            if ids:
                WorkflowRun.objects.filter(run_id__in=ids).update(
                    leased_by=self.worker_id,
                    lease_expires_at=now + timedelta(seconds=LEASE_SECONDS),
                )
        return ids

    def process(self, run_id: str) -> None:
        try:
            wake_at = self.engine.drive(run_id)
        except LeaseLost as lost:
            logger.warning("run=%s %s", run_id, lost)
            return
        except Exception:
            logger.exception("run=%s failed unexpectedly; retrying later", run_id)
            wake_at = timezone.now() + timedelta(seconds=ERROR_BACKOFF_SECONDS)
        self.release(run_id, wake_at)

    def release(self, run_id: str, wake_at: datetime | None) -> None:
        fields: dict[str, object] = {"leased_by": "", "lease_expires_at": None}
        if wake_at is not None:
            fields["next_wake_at"] = wake_at
        WorkflowRun.objects.filter(run_id=run_id, leased_by=self.worker_id).update(**fields)

    def next_due(self) -> datetime | None:
        """Return when the earliest unfinished run is due, or None when none is left."""
        due: datetime | None = WorkflowRun.objects.runnable().aggregate(at=Min("next_wake_at"))[
            "at"
        ]
        return due

    def sleep_until(self, moment: datetime | None) -> None:
        poll = settings.BACKSTOP_RUNNER_POLL_SECONDS
        wait = poll if moment is None else (moment - timezone.now()).total_seconds()
        time.sleep(min(max(wait, 0.01), poll))

    def stop(self) -> None:
        self.stopping = True
