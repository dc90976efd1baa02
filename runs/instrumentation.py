"""Opt-in counters of one runner process, for the benchmark: SQL statements, database
round trips, commits, CPU time and peak memory, written to a JSON file when it stops.

Set ``BACKSTOP_INSTRUMENTATION_DIR`` to a directory to turn them on (``manage.py bench``
does). Unset, ``start()`` returns after one environment lookup and nothing is wrapped.

Counted on every connection of the process (worker threads and heartbeat included):

- statements: each ``execute``/``executemany`` through Django;
- round trips: statements, plus the ``BEGIN`` psycopg sends before a transaction's first
  statement and each ``COMMIT``/``ROLLBACK`` sent to the server;
- commits: explicit ones plus each statement run in autocommit (its own transaction),
  which is what ``pg_stat_database.xact_commit`` counts.

PostgreSQL only (the counts read psycopg's transaction status). The listener's own
LISTEN connection, outside Django, is not counted.

Apart from these, the runner's counts that ``/metrics`` shows and that live in memory only
(lease losses) are prometheus-client counters: with ``PROMETHEUS_MULTIPROC_DIR`` set, in
every runner and web process, each process writes them to a file there and ``/metrics``
adds them up (``controlplane.metrics``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from prometheus_client import Counter
from psycopg.pq import TransactionStatus

from runs import tracing

ENVIRONMENT_VARIABLE = "BACKSTOP_INSTRUMENTATION_DIR"
logger = logging.getLogger("runs.runner")

# Outcomes not recorded because another runner had taken the run (its lease ran out),
# by the run's org id (``/metrics`` shows the org's slug).
LEASE_LOSSES = Counter(
    "backstop_runner_lease_losses",
    "Outcomes a runner did not record because it had lost the run's lease.",
    ["org_id"],
)


def count_lease_lost(org_id: str) -> None:
    """Count an outcome dropped because the runner lost the run's lease. A counter that
    cannot be written (``PROMETHEUS_MULTIPROC_DIR`` missing) never stops the runner."""
    try:
        LEASE_LOSSES.labels(org_id=org_id).inc()
    except OSError as error:
        logger.warning("lease loss not counted (%s); check PROMETHEUS_MULTIPROC_DIR", error)


@dataclass
class Counters:
    statements: int = 0
    round_trips: int = 0
    commits: int = 0
    rollbacks: int = 0


_lock = threading.Lock()
_counters: Counters | None = None
_directory: Path | None = None
_cpu_at_start = 0.0
_wrapped: list[BaseDatabaseWrapper] = []


def start() -> None:
    """Count from now on if ``BACKSTOP_INSTRUMENTATION_DIR`` is set; otherwise do nothing.
    Either way, set tracing up from ``OTEL_*`` now, so a runner says at start-up what it
    exports (``runs.tracing``)."""
    global _counters, _directory, _cpu_at_start
    tracing.configure()
    directory = os.environ.get(ENVIRONMENT_VARIABLE)
    if not directory or _counters is not None:
        return
    _directory, _counters, _cpu_at_start = Path(directory), Counters(), cpu_seconds()
    connection_created.connect(_instrument_new, weak=False, dispatch_uid=__name__)
    for wrapper in connections.all(initialized_only=True):
        if wrapper.connection is not None:
            _instrument(wrapper)


def finish() -> Path | None:
    """Stop counting and write the counters to ``<dir>/runner-<pid>.json``; return its
    path (None when counting is off)."""
    global _counters
    if _counters is None or _directory is None:
        return None
    connection_created.disconnect(dispatch_uid=__name__)
    with _lock:
        counters, _counters = _counters, None
        for wrapper in _wrapped:
            _unwrap(wrapper)
        _wrapped.clear()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "pid": os.getpid(),
        **asdict(counters),
        "cpu_seconds": cpu_seconds() - _cpu_at_start,
        "peak_rss_kb": usage.ru_maxrss,  # kilobytes on Linux
    }
    _directory.mkdir(parents=True, exist_ok=True)
    path = _directory / f"runner-{os.getpid()}.json"
    path.write_text(json.dumps(report))
    return path


def cpu_seconds() -> float:
    """Return the user and system CPU time of this process, every thread included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _count(**deltas: int) -> None:
    with _lock:
        if _counters is not None:
            for name, delta in deltas.items():
                setattr(_counters, name, getattr(_counters, name) + delta)


def _instrument_new(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    _instrument(connection)


def _instrument(wrapper: BaseDatabaseWrapper) -> None:
    """Wrap one Django connection (a thread's): its statements, commits and rollbacks."""
    if wrapper.vendor != "postgresql" or _count_statement in wrapper.execute_wrappers:
        return  # the counts read psycopg's transaction status; or wrapped already
    wrapper.execute_wrappers.append(_count_statement)
    for method, counter in (("_commit", "commits"), ("_rollback", "rollbacks")):
        setattr(wrapper, method, _ending(wrapper, getattr(wrapper, method), counter))
    with _lock:
        _wrapped.append(wrapper)


def _unwrap(wrapper: BaseDatabaseWrapper) -> None:
    with contextlib.suppress(ValueError):
        wrapper.execute_wrappers.remove(_count_statement)
    for method in ("_commit", "_rollback"):
        wrapper.__dict__.pop(method, None)  # the class's own method again


def _count_statement(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    raw = context["connection"].connection
    if raw.autocommit:
        _count(statements=1, round_trips=1, commits=1)
    elif raw.info.transaction_status == TransactionStatus.IDLE:
        _count(statements=1, round_trips=2)  # psycopg sends BEGIN first
    else:
        _count(statements=1, round_trips=1)
    return execute(sql, params, many, context)


def _ending(
    wrapper: BaseDatabaseWrapper, end: Callable[[], None], counter: str
) -> Callable[[], None]:
    """Wrap ``_commit`` or ``_rollback``: psycopg sends nothing when no transaction is open."""

    def counted() -> None:
        raw = wrapper.connection
        if raw is not None and raw.info.transaction_status != TransactionStatus.IDLE:
            _count(**{counter: 1, "round_trips": 1})
        end()

    return counted
