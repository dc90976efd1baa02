import logging
import signal
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from runs.runner import Worker


class Command(BaseCommand):
    help = "Execute workflow runs: claim due runs, apply their steps, compensate failures."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--until-idle",
            action="store_true",
            help="Exit once no run is left to execute (waiting retries included).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        worker = Worker()

        def stop(signum: int, frame: FrameType | None) -> None:
            logging.getLogger("runs.runner").info("stopping after the current step")
            worker.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"runner {worker.worker_id} started")
        driven = worker.run(until_idle=options["until_idle"])
        self.stdout.write(f"runner {worker.worker_id} stopped after driving {driven} run(s)")
