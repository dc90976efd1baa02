import logging
import signal
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from runs.runner import RunnerConfigurationError, Worker


def _in_flight(asked: int | None) -> int:
    if asked is not None:
        return asked
    if connection.features.has_select_for_update_skip_locked:
        return int(settings.BACKSTOP_RUNNER_IN_FLIGHT)
    return 1


class Command(BaseCommand):
    help = "Execute workflow runs: claim due runs, apply their steps, compensate failures."

    def add_arguments(self, parser: CommandParser) -> None:
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
            worker = Worker(
                concurrency=options["concurrency"], in_flight=_in_flight(options["in_flight"])
            )
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
        driven = worker.run(until_idle=options["until_idle"], once=options["once"])
        self.stdout.write(f"runner {worker.worker_id} stopped after driving {driven} run(s)")
