"""Housekeeping the runners do between runs: expiring approvals, starting due drills.

Apps register tasks here at start-up (the control plane registers its own, so the runner
never imports it). Each task must be safe when several runners call it at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

logger = logging.getLogger("runs.periodic")

INTERVAL_SECONDS = 2.0
_tasks: dict[str, Callable[[], object]] = {}


def register(name: str, task: Callable[[], object]) -> None:
    _tasks[name] = task


class Periodic:
    """Run every registered task at most once per interval, for one worker."""

    def __init__(self, interval: float = INTERVAL_SECONDS) -> None:
        self.interval = interval
        self.last = 0.0

    def run_due(self) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        for name, task in list(_tasks.items()):
            try:
                task()
            except Exception:
                logger.exception("periodic task %s failed; it runs again later", name)
