"""The runner process: worker threads that each drive many claimed runs at once
(``runs.pipeline``), a heartbeat that keeps their leases, and a listener that wakes them
when new work is committed."""

from __future__ import annotations

import logging
import os
import socket
import threading

from django.db import connection, connections
from ulid import ULID

from runs import instrumentation
from runs.leases import lease_seconds, renew_leases
from runs.pipeline import Pipeline
from runs.wakeup import Listener

logger = logging.getLogger("runs.runner")

CLAIM_BATCH = 10


class RunnerConfigurationError(Exception):
    pass


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{str(ULID())[-6:]}"


class Worker:
    """One runner process: ``concurrency`` threads share the work of the database, each
    with up to ``in_flight`` platform calls at a time."""

    def __init__(
        self,
        *,
        worker_id: str | None = None,
        concurrency: int = 1,
        in_flight: int = 1,
        batch_size: int = CLAIM_BATCH,
    ) -> None:
        if concurrency < 1 or in_flight < 1:
            raise RunnerConfigurationError("--concurrency and --in-flight must be at least 1.")
        shares = connection.features.has_select_for_update_skip_locked
        if (concurrency > 1 or in_flight > 1) and not shares:
            raise RunnerConfigurationError(
                f"{connection.vendor} cannot share runs between threads safely; "
                "use --concurrency 1 --in-flight 1 (or PostgreSQL for more)."
            )
        self.worker_id = worker_id or default_worker_id()
        self.concurrency = concurrency
        self.stopping = threading.Event()
        self.pipelines = [
            Pipeline(
                worker_id=self.worker_id if concurrency == 1 else f"{self.worker_id}-{n}",
                in_flight=in_flight,
                capacity=max(batch_size, 2 * in_flight),
                stopping=self.stopping,
            )
            for n in range(1, concurrency + 1)
        ]

    # ---- lifecycle -----------------------------------------------------------------------

    def run(self, *, until_idle: bool = False, once: bool = False) -> int:
        """Drive runs until stopped, or until none is left (until_idle), or for one batch
        (once). Return the number of runs driven."""
        instrumentation.start()  # only when BACKSTOP_INSTRUMENTATION_DIR is set
        listener = None
        if connection.vendor == "postgresql" and not once:
            listener = Listener(connection.settings_dict, self._wake)
            listener.start()
        heartbeat = threading.Thread(target=self._heartbeat, name="backstop-heartbeat", daemon=True)
        heartbeat.start()
        try:
            if self.concurrency == 1:
                return self.pipelines[0].run(until_idle=until_idle, once=once)
            threads = [
                threading.Thread(
                    target=self._thread_loop,
                    args=(pipeline, until_idle, once),
                    name=f"backstop-worker-{n}",
                )
                for n, pipeline in enumerate(self.pipelines, start=1)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return sum(pipeline.driven for pipeline in self.pipelines)
        finally:
            self.stopping.set()
            if listener is not None:
                listener.stop()
            instrumentation.finish()

    def stop(self) -> None:
        """Stop after the calls in progress are recorded; the other runs are handed back."""
        self.stopping.set()
        self._wake()

    def _wake(self) -> None:
        for pipeline in self.pipelines:
            pipeline.wake()

    def _thread_loop(self, pipeline: Pipeline, until_idle: bool, once: bool) -> None:
        try:
            pipeline.run(until_idle=until_idle, once=once)
        finally:
            connections.close_all()

    def _heartbeat(self) -> None:
        """Renew the leases of every run this process holds, a few times per lease."""
        interval = lease_seconds().total_seconds() / 3
        try:
            while not self.stopping.wait(interval):
                renew_leases(self.worker_id)
        finally:
            connections.close_all()
