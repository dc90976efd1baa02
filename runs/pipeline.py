"""One runner thread's runs in flight: many claimed runs driven at once, their platform
calls made side by side by a pool of call threads, their outcomes recorded a group at a
time.

The loop: claim due runs while there is room; decide each run's next move
(``runs.saga``) and make its call: in the pool for a platform outside the database, at
once on the loop's own connection for one in it (the sandbox); gather the outcomes that
are back and record them all in one fenced transaction (``runs.records``); go on with the
runs that continue. Each run still moves one step at a time (its next call starts only after its
last outcome is committed), so everything that held for one run at a time holds here:
stable keys, the record committed before the next call, nothing written by a runner that
lost the lease. With ``in_flight=1`` calls are made in the loop's own thread, one after
another (SQLite, and tests that share the loop's transaction), still recorded by group.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from datetime import datetime, timedelta

from django.conf import settings
from django.db import (
    DatabaseError,
    close_old_connections,
    connection,
    transaction,
)
from django.db.models import Case, Min, When
from django.utils import timezone

from mutations.connectors import PlatformError, in_database
from mutations.hashing import snapshot_scopes
from runs import engine, instrumentation
from runs.callpool import CallPool, Outcome, Outcomes
from runs.claims import SNAPSHOT_RETRY, claim_runs
from runs.crashpoints import crash_point
from runs.models import Engine, RunStatus, StepExecution, WorkflowRun
from runs.periodic import Periodic
from runs.records import Recorder, Snapshot
from runs.saga import Action, Finish, Wait
from runs.state import RunState
from runs.wakeup import notify_runners

logger = logging.getLogger("runs.runner")

ERROR_BACKOFF = timedelta(seconds=5)
CLAIM_BACKOFF = 0.1  # seconds
GROUP_WINDOW = 0.002  # seconds an outcome may wait for others to share its commit


class Pipeline:
    """Drive up to ``capacity`` claimed runs at once, with up to ``in_flight`` calls made
    at the same time; record their outcomes a group per transaction."""

    def __init__(
        self, *, worker_id: str, in_flight: int, capacity: int, stopping: threading.Event
    ) -> None:
        self.worker_id = worker_id
        self.capacity = max(capacity, in_flight)
        self.stopping = stopping
        self.recorder = Recorder(worker_id=worker_id)
        self.pool = CallPool(in_flight, worker_id) if in_flight > 1 else None
        self.notified = threading.Event()  # new work may be due: claim
        self.progress = threading.Event()  # a call is back, new work, or stopping
        self.active: dict[str, RunState] = {}
        self.calls: dict[Future[Outcomes], list[RunState]] = {}
        self.ready: list[tuple[RunState, Outcome]] = []
        self.claim_at = 0.0  # monotonic: when a claim may find work again
        self.unreleased: list[tuple[list[RunState], datetime]] = []
        self.driven = 0

    def wake(self) -> None:
        self.notified.set()
        self.progress.set()

    def run(self, *, until_idle: bool, once: bool) -> int:
        """Drive runs until stopped, or until none is left (until_idle), or until the first
        batch claimed has been driven (once). Return the number of runs claimed."""
        housekeeping = Periodic()
        first = True  # no claim asked yet
        try:
            while not (self.stopping.is_set() and not self.calls and not self.ready):
                if self.active or not self.notified.is_set():
                    housekeeping.run_due()  # an idle runner claims new work first
                self._retry_releases()
                may_claim = not self.stopping.is_set() and (first or not once)
                self._gather()
                if self.ready:
                    self._record(claim=may_claim)
                elif may_claim and self._claim():
                    first = False
                elif not self.active:
                    if once and not first:
                        break
                    if not self._idle(until_idle):
                        break
        finally:
            if self.active:  # let another runner carry on at once with them
                self._release(list(self.active.values()), timezone.now())
            self._retry_releases()
            if self.pool is not None:
                self.pool.close()
        return self.driven

    # ---- claiming and moving ---------------------------------------------------------------

    def _room(self) -> int:
        """Return how many runs to claim now (0: not now): claim in batches, once half the
        room is free, and only when some may be due."""
        held = len(self.active)
        room = self.capacity - held
        if held and room < (self.capacity + 1) // 2:
            return 0
        if time.monotonic() < self.claim_at and not self.notified.is_set():
            return 0
        return room

    def _claim(self) -> bool:
        """Claim due runs in a transaction of their own; return True when it asked."""
        room = self._room()
        if room:
            self._take(self._claim_runs(room))
        return bool(room)

    def _claim_runs(self, room: int) -> list[RunState]:
        """Claim in a transaction of its own, or a savepoint of the group's: a claim that
        fails (e.g. chosen as a deadlock's victim) is tried again after a moment."""
        self.notified.clear()
        try:
            claimed = claim_runs(self.worker_id, room, holding=self.active.keys())
        except DatabaseError as error:
            logger.warning("claim failed (%s); claiming again shortly", error)
            self.claim_at = time.monotonic() + CLAIM_BACKOFF
            return []
        if len(claimed) < room:  # none left for now: wait for a notification or the poll
            self.claim_at = time.monotonic() + settings.BACKSTOP_RUNNER_POLL_SECONDS
        return claimed

    def _take(self, claimed: list[RunState]) -> None:
        self.driven += len(claimed)
        for state in claimed:
            self.active[state.run.run_id] = state
        self._advance(claimed)

    def _advance(self, states: list[RunState]) -> None:
        """Start each run's next move: a call in the pool, or an outcome to record at once.
        Runs whose scope's state must be read by calls (started, or ended, on platforms
        outside the database) share one read in the pool."""
        if self.stopping.is_set():
            return  # handed back when the loop ends
        reads = [state for state in states if self._move(state)]
        if reads:
            self._submit(reads, lambda: _read_scopes(reads))

    def _move(self, state: RunState) -> bool:
        """Start the run's next move; return True when it needs its scope's state read."""
        if state.run.status == RunStatus.PENDING or state.finishing is not None:
            return True
        move = state.next_move(timezone.now())
        if isinstance(move, Finish):
            state.finishing = move
            if not state.reads_state_in_database:
                return True
            self._ready(state, lambda recorder: _finish(recorder, state, move, None))
        elif isinstance(move, Wait):
            self._ready(state, lambda recorder: _release(recorder, state, move.until))
            self._claim_by(move.until)
        elif move.skip_reason:
            self._ready(state, lambda recorder: recorder.record_skip(state, move))
        else:
            remote = not in_database(move.change.platform)
            self._submit([state], lambda: [(state, _call(state, move))], in_flight=remote)
        return False

    def _ready(self, state: RunState, record: Callable[[Recorder], bool]) -> None:
        self.ready.append((state, Outcome(record)))

    def _submit(
        self, states: list[RunState], task: Callable[[], Outcomes], *, in_flight: bool = True
    ) -> None:
        """Hand a task to the pool (``in_flight``: a call to a platform outside the
        database), or run it now: calls to platforms in the database run on the loop's own
        connection, one after another, and still share the group's commit."""
        if self.pool is None or not in_flight:
            try:
                self.ready += task()
            except Exception:
                self._failed(states)
            return
        future = self.pool.submit(task)
        self.calls[future] = states
        future.add_done_callback(lambda _: self.progress.set())

    # ---- gathering and recording -------------------------------------------------------------

    def _gather(self) -> None:
        """Take the outcomes of the calls that are back; wait for one (or for new work, up
        to the poll interval) when nothing is ready to record. While fewer than half the
        outstanding outcomes are back, wait a moment (GROUP_WINDOW) for more to share
        the group's commit."""
        if not self.ready and self.calls:
            self.progress.wait(settings.BACKSTOP_RUNNER_POLL_SECONDS)
        self._take_done()
        deadline = time.monotonic() + GROUP_WINDOW
        while self.calls and len(self.ready) < self._outstanding() and not self.stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or not self.progress.wait(left):
                break
            self._take_done()

    def _take_done(self) -> None:
        self.progress.clear()
        for future in [f for f in self.calls if f.done()]:
            states = self.calls.pop(future)
            try:
                self.ready += future.result()
            except Exception:
                self._failed(states)

    def _outstanding(self) -> int:
        return sum(len(states) for states in self.calls.values())

    def _record(self, *, claim: bool) -> None:
        """Record every outcome ready in one transaction, and claim more runs in it when
        there is room; then move their runs on."""
        group, self.ready = self.ready, []
        states = [state for state, _ in group]
        results: list[tuple[RunState, Outcome, bool]] = []
        try:
            with transaction.atomic():
                # Claim first: a claim may wait on another runner's scope keys, and must
                # not hold this group's runs locked meanwhile (their heartbeat waits).
                room = self._room() if claim else 0
                claimed = self._claim_runs(room) if room else []
                with self.recorder.recording(states) as held:
                    for state, outcome in group:
                        if state.run.run_id in held:
                            results.append((state, outcome, outcome.record(self.recorder)))
        except Exception:
            logger.exception(
                "recording %d outcome(s) failed; their runs are retried later", len(group)
            )
            self._release(states, timezone.now() + ERROR_BACKOFF)
            return
        recorded = {state.run.run_id for state, _, _ in results}
        for state in states:
            if state.run.run_id not in recorded:
                logger.warning(
                    "run=%s trace=%s lease lost to another runner; its outcome is not recorded",
                    state.run.run_id,
                    state.run.trace_id,
                    extra={"run_id": state.run.run_id, "trace_id": state.run.trace_id},
                )
                instrumentation.count_lease_lost(state.run.org_id)
                self.active.pop(state.run.run_id, None)
        going_on = []
        for state, outcome, handed_back in results:
            outcome.committed()
            if handed_back:
                self.active.pop(state.run.run_id, None)
            else:
                going_on.append(state)
        self._advance(going_on)
        self._take(claimed)

    # ---- handing runs back -------------------------------------------------------------------

    def _failed(self, states: list[RunState]) -> None:
        logger.exception(
            "runs=%s failed unexpectedly; retrying later", [s.run.run_id for s in states]
        )
        self._release(states, timezone.now() + ERROR_BACKOFF)

    def _release(self, states: list[RunState], wake_at: datetime) -> None:
        """Hand runs back (this runner stops driving them); when that fails too, try
        again on the next turn of the loop (the heartbeat renews their leases meanwhile)."""
        for state in states:
            self.active.pop(state.run.run_id, None)
        try:
            with transaction.atomic():
                WorkflowRun.objects.filter(
                    run_id__in=sorted(s.run.run_id for s in states), leased_by=self.worker_id
                ).update(leased_by="", lease_expires_at=None, next_wake_at=wake_at)
                notify_runners()
        except DatabaseError as error:
            logger.warning("runs not handed back yet (%s); trying again", error)
            self.unreleased.append((states, wake_at))

    def _retry_releases(self) -> None:
        unreleased, self.unreleased = self.unreleased, []
        for states, wake_at in unreleased:
            self._release(states, wake_at)

    def _claim_by(self, moment: datetime) -> None:
        """Claim again by ``moment``, when a run handed back to wait is due."""
        wait = (moment - timezone.now()).total_seconds()
        self.claim_at = min(self.claim_at, time.monotonic() + max(wait, 0))

    # ---- waiting -----------------------------------------------------------------------------

    def _idle(self, until_idle: bool) -> bool:
        """Wait for work with nothing in flight; return False when the loop should end."""
        if not connection.in_atomic_block:
            close_old_connections()
        due = _next_claimable()
        if until_idle and due is None:
            return False
        poll = settings.BACKSTOP_RUNNER_POLL_SECONDS
        wait = poll if due is None else (due - timezone.now()).total_seconds()
        if not self.notified.is_set():
            self.progress.wait(min(max(wait, 0.001), poll))
        self.claim_at = 0.0
        return True


def _next_claimable() -> datetime | None:
    """Return when the earliest unfinished run may be claimed (it is due, and its lease,
    if another runner holds it, has run out), or None when none is left."""
    claimable_at = Case(When(leased_by="", then="next_wake_at"), default="lease_expires_at")
    runnable = WorkflowRun.objects.runnable().filter(engine=Engine.BUILTIN)
    at: datetime | None = runnable.aggregate(at=Min(claimable_at))["at"]
    return at


def _read_scopes(states: list[RunState]) -> Outcomes:
    """Read the state of each run's scope, a call per platform and org for all of them:
    the before-state of runs to start, the after-state of runs that ended."""
    outcomes: Outcomes = []
    by_org: dict[str, list[RunState]] = {}
    for state in states:
        by_org.setdefault(state.run.org_id, []).append(state)
    for org_id, group in by_org.items():
        try:
            found = snapshot_scopes(org_id=org_id, scopes=[s.run.scope for s in group])
        except PlatformError as error:
            logger.warning(
                "runs=%s state not read: %s", [s.run.run_id for s in group], error.message
            )
            wake_at = timezone.now() + SNAPSHOT_RETRY
            outcomes += [(s, _released(s, wake_at)) for s in group]
            continue
        outcomes += [(s, _read(s, snapshot)) for s, snapshot in zip(group, found, strict=True)]
    return outcomes


def _read(state: RunState, snapshot: Snapshot) -> Outcome:
    finish = state.finishing
    if finish is None:  # claimed, not started
        return Outcome(lambda recorder: _start(recorder, state, snapshot))
    return Outcome(lambda recorder: _finish(recorder, state, finish, snapshot))


def _released(state: RunState, wake_at: datetime) -> Outcome:
    return Outcome(lambda recorder: _release(recorder, state, wake_at))


def _call(state: RunState, action: Action) -> Outcome:
    called = engine.attempt(state, action)

    def committed() -> None:
        crash_point("after_record")
        if action.kind == StepExecution.Kind.COMPENSATION:
            crash_point("between_compensations")

    return Outcome(lambda recorder: engine.record(recorder, state, called), committed)


def _start(recorder: Recorder, state: RunState, before: Snapshot) -> bool:
    recorder.record_start(state, before)
    return False


def _finish(recorder: Recorder, state: RunState, finish: Finish, after: Snapshot | None) -> bool:
    recorder.record_finish(state, finish, after)
    return True


def _release(recorder: Recorder, state: RunState, wake_at: datetime) -> bool:
    recorder.release(state, wake_at)
    return True
