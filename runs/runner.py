"""The runner process: worker threads that claim and drive runs, a heartbeat that keeps
their leases, and a listener that wakes them when new work is committed."""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection, connections, transaction
from django.db.models import Min
from django.utils import timezone
from ulid import ULID

from runs import instrumentation
from runs.claims import claim_runs
from runs.engine import Engine
from runs.exceptions import LeaseLost
from runs.models import WorkflowRun
from runs.periodic import Periodic
from runs.records import lease_seconds
from runs.state import RunState
from runs.wakeup import Listener, notify_runners

logger = logging.getLogger("runs.runner")

CLAIM_BATCH = 10
ERROR_BACKOFF = timedelta(seconds=5)


class RunnerConfigurationError(Exception):
    pass


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{str(ULID())[-6:]}"


class Worker:
    """One runner process: ``concurrency`` threads share the work of the database."""

    def __init__(
        self,
        *,
        worker_id: str | None = None,
        concurrency: int = 1,
        batch_size: int = CLAIM_BATCH,
    ) -> None:
        if concurrency < 1:
            raise RunnerConfigurationError("--concurrency must be at least 1.")
        if concurrency > 1 and not connection.features.has_select_for_update_skip_locked:
            raise RunnerConfigurationError(
                f"{connection.vendor} cannot share runs between threads safely; "
                "use --concurrency 1 (or PostgreSQL for more)."
            )
        self.worker_id = worker_id or default_worker_id()
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.stopping = threading.Event()
        self.wake = threading.Event()
        self.driven = 0
        self._lock = threading.Lock()

    # ---- lifecycle -----------------------------------------------------------------------

    def run(self, *, until_idle: bool = False, once: bool = False) -> int:
        """Drive runs until stopped, or until none is left (until_idle), or for one batch
        (once). Return the number of runs driven."""
        instrumentation.start()  # only when BACKSTOP_INSTRUMENTATION_DIR is set
        listener = None
        if connection.vendor == "postgresql" and not once:
            listener = Listener(connection.settings_dict, self.wake)
            listener.start()
        heartbeat = threading.Thread(target=self._heartbeat, name="backstop-heartbeat", daemon=True)
        heartbeat.start()
        try:
            if self.concurrency == 1:
                self._loop(self.worker_id, until_idle=until_idle, once=once)
            else:
                threads = [
                    threading.Thread(
                        target=self._thread_loop,
                        args=(f"{self.worker_id}-{n}", until_idle, once),
                        name=f"backstop-worker-{n}",
                    )
                    for n in range(1, self.concurrency + 1)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
        finally:
            self.stopping.set()
            if listener is not None:
                listener.stop()
            instrumentation.finish()
        return self.driven

    def stop(self) -> None:
        """Stop after the step in progress; runs not yet started are handed back."""
        self.stopping.set()
        self.wake.set()

    def _thread_loop(self, worker_id: str, until_idle: bool, once: bool) -> None:
        try:
            self._loop(worker_id, until_idle=until_idle, once=once)
        finally:
            connections.close_all()

    def _loop(self, worker_id: str, *, until_idle: bool, once: bool) -> None:
        engine = Engine(worker_id=worker_id)
        housekeeping = Periodic()
        while not self.stopping.is_set():
            if not connection.in_atomic_block:
                close_old_connections()
            self.wake.clear()
            housekeeping.run_due()
            claimed = claim_runs(engine, self.batch_size)
            for index, state in enumerate(claimed):
                if self.stopping.is_set():
                    self._hand_back(engine, claimed[index:])
                    break
                self._process(engine, state)
            with self._lock:
                self.driven += len(claimed)
            if once:
                return
            if claimed:
                continue
            next_due = self._next_due()
            if until_idle and next_due is None:
                return
            self._sleep_until(next_due)

    def _process(self, engine: Engine, state: RunState) -> None:
        try:
            handed_back = engine.drive(state, stopping=self.stopping.is_set)
        except LeaseLost as lost:
            logger.warning("run=%s %s", state.run.run_id, lost)
            return
        except Exception:
            logger.exception("run=%s failed unexpectedly; retrying later", state.run.run_id)
            self._release(engine.worker_id, [state], timezone.now() + ERROR_BACKOFF)
            return
        if not handed_back:  # stopping: let another runner carry on at once
            self._hand_back(engine, [state])

    def _hand_back(self, engine: Engine, states: list[RunState]) -> None:
        self._release(engine.worker_id, states, timezone.now())

    def _release(self, worker_id: str, states: list[RunState], wake_at: datetime) -> None:
        with transaction.atomic():
            WorkflowRun.objects.filter(
                run_id__in=[s.run.run_id for s in states], leased_by=worker_id
            ).update(leased_by="", lease_expires_at=None, next_wake_at=wake_at)
            notify_runners()

    # ---- waiting -------------------------------------------------------------------------

    def _next_due(self) -> datetime | None:
        """Return when the earliest unfinished run is due, or None when none is left."""
        due: datetime | None = WorkflowRun.objects.runnable().aggregate(at=Min("next_wake_at"))[
            "at"
        ]
        return due

    def _sleep_until(self, moment: datetime | None) -> None:
        poll = settings.BACKSTOP_RUNNER_POLL_SECONDS
        wait = poll if moment is None else (moment - timezone.now()).total_seconds()
        self.wake.wait(min(max(wait, 0.001), poll))

    def _heartbeat(self) -> None:
        """Renew the leases of every run this process holds, a few times per lease."""
        interval = lease_seconds().total_seconds() / 3
        try:
            while not self.stopping.wait(interval):
                WorkflowRun.objects.filter(leased_by__startswith=self.worker_id).update(
                    lease_expires_at=timezone.now() + lease_seconds()
                )
        finally:
            connections.close_all()
