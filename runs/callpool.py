"""The call pool of a runner thread, and what its tasks give back: outcomes to record."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from django.db import connections

from runs.records import Recorder
from runs.state import RunState


def _nothing() -> None:
    pass


@dataclass(frozen=True)
class Outcome:
    """One run's outcome, ready to be recorded: ``record`` writes it inside a group's
    recording and returns True when the run was handed back; ``committed`` runs after the
    group's commit."""

    record: Callable[[Recorder], bool]
    committed: Callable[[], None] = field(default=_nothing)


Outcomes = list[tuple[RunState, Outcome]]  # what a task in the pool gives back


class CallPool:
    """``size`` threads that make calls; each closes its database connections on exit."""

    def __init__(self, size: int, name: str) -> None:
        self._tasks: queue.SimpleQueue[tuple[Future[Outcomes], Callable[[], Outcomes]] | None]
        self._tasks = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-call-{n}", daemon=True)
            for n in range(1, size + 1)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, task: Callable[[], Outcomes]) -> Future[Outcomes]:
        future: Future[Outcomes] = Future()
        self._tasks.put((future, task))
        return future

    def close(self) -> None:
        for _ in self._threads:
            self._tasks.put(None)
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        try:
            while (item := self._tasks.get()) is not None:
                future, task = item
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(task())
                except BaseException as exc:
                    future.set_exception(exc)
        finally:
            connections.close_all()
