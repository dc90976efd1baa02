from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.engines.workers import default_in_flight, temporal_worker
from runs.runner import RunnerConfigurationError, Worker

if TYPE_CHECKING:
    from runs.engines.temporal.worker import TemporalWorker


class Command(BaseCommand):
    help = "Execute workflow runs: claim due runs, apply their steps, compensate failures."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--engine",
            choices=["builtin", "temporal"],
            default=settings.BACKSTOP_ENGINE,
            help="builtin: Backstop's own runner; temporal: a Temporal worker (TEMPORAL_ADDRESS, "
            "TEMPORAL_NAMESPACE, TEMPORAL_TASK_QUEUE). Default: BACKSTOP_ENGINE.",
        )
        parser.add_argument(
            "--until-idle",
            action="store_true",
            help="Exit once no run is left to execute (waiting retries included).",
        )
        parser.add_argument(
            "--once", action="store_true", help="Claim and drive one batch of due runs, then exit."
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=1,
            help="Worker threads in this process (PostgreSQL only above 1).",
        )
        parser.add_argument(
            "--in-flight",
            type=int,
            help="Platform calls each worker thread makes at the same time (PostgreSQL only "
            "above 1; default BACKSTOP_RUNNER_IN_FLIGHT there, 1 elsewhere).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            worker = _worker(options)
        except RunnerConfigurationError as error:
            raise CommandError(str(error)) from None

        def stop(signum: int, frame: FrameType | None) -> None:
            logging.getLogger("runs.runner").info(
                "runner %s stopping after the current step", worker.worker_id
            )
            worker.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"runner {worker.worker_id} started", ending="\n")
        self.stdout.flush()
        try:
            if isinstance(worker, Worker):
                driven = worker.run(until_idle=options["until_idle"], once=options["once"])
            else:
                driven = worker.run(until_idle=options["until_idle"])
        except RunnerConfigurationError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"runner {worker.worker_id} stopped after driving {driven} run(s)")


def _worker(options: dict[str, Any]) -> Worker | TemporalWorker:
    in_flight = default_in_flight() if options["in_flight"] is None else options["in_flight"]
    if options["engine"] == "builtin":
        return Worker(concurrency=options["concurrency"], in_flight=in_flight)
    if options["once"] or options["concurrency"] != 1:
        raise RunnerConfigurationError(
            "--once and --concurrency are the built-in runner's; a Temporal worker takes "
            "--in-flight (activities at a time) and --until-idle."
        )
    return temporal_worker(in_flight=in_flight)
