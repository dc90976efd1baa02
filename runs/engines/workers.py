"""A worker of either engine for this process: the built-in runner's default of calls in
flight, and a Temporal worker when the optional extra is installed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection

from runs.runner import RunnerConfigurationError

if TYPE_CHECKING:
    from runs.engines.temporal.worker import TemporalWorker


def default_in_flight() -> int:
    """Calls at a time per worker thread: BACKSTOP_RUNNER_IN_FLIGHT where the database lets
    threads share runs (PostgreSQL), one elsewhere (SQLite)."""
    if connection.features.has_select_for_update_skip_locked:
        return int(settings.BACKSTOP_RUNNER_IN_FLIGHT)
    return 1


def temporal_worker(*, in_flight: int) -> TemporalWorker:
    """Return a Temporal worker for this process, or say how to install the engine."""
    try:
        from runs.engines.temporal.worker import TemporalWorker
    except ImportError:
        raise RunnerConfigurationError(
            "The Temporal engine needs the temporal extra: pip install 'backstop[temporal]'."
        ) from None
    return TemporalWorker(in_flight=in_flight)
