"""A Temporal worker process for Backstop's runs (``runworkflows --engine temporal``).

It polls the task queue for the workflows and activities of every registered workflow
(Python, plug-in and YAML alike: they all run as ``BackstopRun``), and hands runs that
may start to Temporal (``dispatch``), woken by the same notifications as the built-in
runners, polling otherwise. Between hand-overs it does the runners' housekeeping
(``runs.periodic``: webhooks, approvals that expire, scheduled drills, the chain's check),
so a deployment whose runs are all on Temporal needs no built-in runner.

``--until-idle`` waits for Temporal too: a run's last outcome is in the database before
its workflow has taken it in and closed, so the worker stays until no workflow of its task
queue is open either (a worker that left earlier would leave them open until the next).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import connection, connections
from temporalio.client import Client
from temporalio.service import RPCError
from temporalio.worker import Worker

from runs import instrumentation
from runs.engines.temporal import activities, dispatch
from runs.engines.temporal.workflow import BackstopRun
from runs.models import RUNNABLE_STATUSES, Engine, WorkflowRun
from runs.periodic import Periodic
from runs.runner import RunnerConfigurationError, default_worker_id
from runs.wakeup import Listener

logger = logging.getLogger("runs.engines.temporal")


async def connect() -> Client:
    """Connect to the configured Temporal cluster, or say which address failed."""
    try:
        return await Client.connect(
            settings.TEMPORAL_ADDRESS, namespace=settings.TEMPORAL_NAMESPACE
        )
    except RuntimeError as error:
        raise RunnerConfigurationError(
            f"Cannot reach Temporal at {settings.TEMPORAL_ADDRESS} (namespace "
            f"{settings.TEMPORAL_NAMESPACE}): {error}. Start one, e.g. "
            "`temporal server start-dev`, or set TEMPORAL_ADDRESS."
        ) from None


class TemporalWorker:
    """One worker process: up to ``in_flight`` activities (platform calls) at a time."""

    def __init__(self, *, worker_id: str | None = None, in_flight: int = 1) -> None:
        if in_flight < 1:
            raise RunnerConfigurationError("--in-flight must be at least 1.")
        if in_flight > 1 and not connection.features.has_select_for_update_skip_locked:
            raise RunnerConfigurationError(
                f"{connection.vendor} cannot record from several threads safely; "
                "use --in-flight 1 (or PostgreSQL for more)."
            )
        self.worker_id = worker_id or default_worker_id()
        self.in_flight = in_flight
        self.stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self.handed = 0

    def run(self, *, until_idle: bool = False) -> int:
        """Work until stopped (or, ``until_idle``, until no run of this engine is left to
        run and their workflows closed); return the number of runs this process handed to
        Temporal."""
        instrumentation.start()  # only when BACKSTOP_INSTRUMENTATION_DIR is set
        try:
            # On a thread of its own: the caller's thread may run an event loop already.
            with ThreadPoolExecutor(1, thread_name_prefix="backstop-temporal") as thread:
                thread.submit(asyncio.run, self._serve(until_idle)).result()
        finally:
            instrumentation.finish()
        return self.handed

    def stop(self) -> None:
        self.stopping.set()
        self._wake()

    def _wake(self) -> None:
        """Wake the dispatch loop (from any thread); a loop already closed has stopped."""
        loop, wakeup = self._loop, self._wakeup
        if loop is not None and wakeup is not None:
            with contextlib.suppress(RuntimeError):  # closed between the check and the call
                loop.call_soon_threadsafe(wakeup.set)

    async def _serve(self, until_idle: bool) -> None:
        self._loop, self._wakeup = asyncio.get_running_loop(), asyncio.Event()
        client = await connect()
        listener = None
        if connection.vendor == "postgresql":
            listener = Listener(connection.settings_dict, self._wake)
            listener.start()
        # The database work of this loop runs on one thread of its own.
        with (
            ThreadPoolExecutor(self.in_flight, thread_name_prefix="backstop-activity") as pool,
            ThreadPoolExecutor(1, thread_name_prefix="backstop-dispatch") as db,
        ):
            worker = Worker(
                client,
                task_queue=settings.TEMPORAL_TASK_QUEUE,
                workflows=[BackstopRun],
                activities=[activities.begin, activities.act, activities.finish],
                activity_executor=pool,
                max_concurrent_activities=self.in_flight,
                identity=self.worker_id,
            )
            try:
                async with worker:
                    await self._dispatch_until(client, db, until_idle)
            finally:
                if listener is not None:
                    listener.stop()
                self._loop = None
                await self._in(db, _close_connections, pool, self.in_flight)
                await self._in(db, connections.close_all)

    async def _dispatch_until(
        self, client: Client, db: ThreadPoolExecutor, until_idle: bool
    ) -> None:
        assert self._wakeup is not None
        poll = settings.BACKSTOP_RUNNER_POLL_SECONDS
        housekeeping = Periodic()
        while not self.stopping.is_set():
            self._wakeup.clear()
            await self._in(db, housekeeping.run_due)
            plans = await self._in(db, dispatch.due_plans)
            if plans:
                handed = await dispatch.dispatch(client, plans)
                await self._in(db, dispatch.mark_dispatched, handed)
                self.handed += len(handed)
                if len(handed) == len(plans) == dispatch.BATCH:
                    continue  # more may be waiting
            elif (
                until_idle
                and not await self._in(db, _runnable)
                and not await _open_workflows(client)
            ):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), poll)

    async def _in(self, pool: ThreadPoolExecutor, call: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, call, *args)


async def _open_workflows(client: Client) -> int:
    """Return how many workflows of this task queue Temporal still runs (0 when its
    visibility store cannot count them: the database alone then says when to stop)."""
    query = f'TaskQueue="{settings.TEMPORAL_TASK_QUEUE}" AND ExecutionStatus="Running"'
    try:
        return (await client.count_workflows(query)).count
    except RPCError as error:
        logger.warning("cannot count open workflows (%s); stopping on the database's word", error)
        return 0


def _close_connections(pool: ThreadPoolExecutor, threads: int) -> None:
    """Close the database connections of the pool's threads (kept open between activities,
    ``CONN_MAX_AGE``): a worker run inside a longer process leaves none behind. A barrier
    puts one call on each thread."""
    barrier = threading.Barrier(threads)

    def close() -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            barrier.wait(timeout=10)
        connections.close_all()

    for done in [pool.submit(close) for _ in range(threads)]:
        done.result()


def _runnable() -> bool:
    """True while a run of this engine may still move (pending, running, compensating)."""
    return WorkflowRun.objects.filter(engine=Engine.TEMPORAL, status__in=RUNNABLE_STATUSES).exists()
