"""A run's attempts, one per try of each step and compensation, for the drawing and its
table.

Attempts are numbered across a step's whole life: when a person retries a rollback, the
runner counts the new round from 1 again (its retry budget is per round), but the page
goes on counting (4, 5, ...) so that no two rows read "attempt 1". Each attempt's start
and end come from the step's error history (``started_at``, ``at``) and, for the attempt
that wrote the step's Mutation Log entry, from that entry and the step's finish.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.utils.dateparse import parse_datetime

from runs.models import StepExecution

FORWARD, COMPENSATION = StepExecution.Kind.FORWARD, StepExecution.Kind.COMPENSATION
SUCCEEDED, RETRIED, FAILED, SKIPPED = "succeeded", "retried", "failed", "skipped"


class LoggedEntry(Protocol):
    """What an attempt needs of a Mutation Log entry that no step record explains."""

    @property
    def mutation_id(self) -> str: ...

    @property
    def run_id(self) -> str | None: ...

    @property
    def step_id(self) -> str: ...

    @property
    def platform(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def created_at(self) -> datetime: ...

    @property
    def compensates_id(self) -> str | None: ...

    @property
    def error_message(self) -> str | None: ...


@dataclass(slots=True)
class AttemptView:
    lane: str
    name: str  # the step's or the compensation's id
    step_id: str  # the forward step, for both kinds
    kind: str
    number: int  # from 1, across retried rollbacks; 0 for a skipped compensation
    started_at: datetime
    finished_at: datetime
    outcome: str  # succeeded | retried | failed | skipped
    error: str = ""
    platform: str = ""
    mutation_id: str | None = None
    compensates_id: str | None = None
    repeats: int | None = None  # the attempt whose error this one repeats word for word
    request_id: str = ""  # the platform's id of the request, when it gave one
    http_status: int | None = None  # how an HTTP platform answered
    error_kind: str = ""  # rate_limit, transient, fatal, ambiguous

    @property
    def duration(self) -> timedelta:
        return self.finished_at - self.started_at

    @property
    def is_compensation(self) -> bool:
        return self.kind == COMPENSATION


@dataclass(frozen=True)
class Lane:
    """One row of the drawing: a forward step, or the compensation of one."""

    key: str
    name: str
    kind: str
    step_id: str
    platform: str
    next_attempt_at: datetime | None = None  # a retry waiting to be made


@dataclass(frozen=True)
class ErrorGroup:
    """The same error over several attempts of a step, said once with its count."""

    message: str
    attempts: list[int]
    request_ids: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.attempts)

    @property
    def span(self) -> str:
        first, last = self.attempts[0], self.attempts[-1]
        if len(self.attempts) == 1:
            return f"#{first}"
        if last - first + 1 == len(self.attempts):
            return f"#{first}\u2013#{last}"
        return ", ".join(f"#{n}" for n in self.attempts)


def lane_key(kind: str, name: str) -> str:
    return f"{kind}:{name}"


def _moment(value: Any) -> datetime | None:
    return parse_datetime(value) if isinstance(value, str) else None


def step_attempts(step: StepExecution) -> list[AttemptView]:
    """Return a step's attempts in order: one per entry of its error history, then the one
    that succeeded (or the skip)."""
    errors: list[dict[str, Any]] = list(step.errors or [])
    key = lane_key(step.kind, step.name)
    mutation = step.mutation
    platform = mutation.platform if mutation is not None else _platform_undone(step)
    common: dict[str, Any] = {
        "lane": key,
        "name": step.name,
        "step_id": step.step_id,
        "kind": step.kind,
        "platform": platform,
        "compensates_id": step.compensates_id,
    }
    found: list[AttemptView] = []
    # The errors of the round under way (the runner counts ``attempts`` per round); the
    # one before them ended an earlier round, which a person retried.
    succeeded = step.status == StepExecution.Status.SUCCEEDED
    this_round = max(step.attempts - (1 if succeeded else 0), 0)
    last_of_earlier_round = len(errors) - this_round - 1
    for n, entry in enumerate(errors):
        last = n == len(errors) - 1
        final = last and step.status == StepExecution.Status.FAILED
        # A new round starts its count again from 1.
        ended_round = n == last_of_earlier_round or (not last and errors[n + 1].get("attempt") == 1)
        end = _moment(entry.get("at")) or step.finished_at or step.started_at
        assert end is not None, "a recorded attempt has a time"
        start = _moment(entry.get("started_at"))
        if start is None:  # recorded before attempts kept their start
            if final and mutation is not None:
                start = mutation.created_at
            elif n == 0 and step.started_at is not None and step.started_at <= end:
                start = step.started_at
            else:
                start = end
        message = str(entry.get("message", ""))
        previous = found[-1] if found else None
        found.append(
            AttemptView(
                number=n + 1,
                started_at=start,
                finished_at=max(end, start),
                outcome=FAILED if final or ended_round else RETRIED,
                error=message,
                mutation_id=step.mutation_id if final else None,
                repeats=_repeats(previous, message),
                request_id=str(entry.get("request_id", "")),
                http_status=entry.get("http_status"),
                error_kind=str(entry.get("kind", "")),
                **common,
            )
        )
    if step.status == StepExecution.Status.SUCCEEDED:
        receipt = (mutation.receipt if mutation is not None else None) or {}
        start = mutation.created_at if mutation is not None else step.started_at
        assert start is not None
        found.append(
            AttemptView(
                number=len(errors) + 1,
                started_at=start,
                finished_at=max(step.finished_at or start, start),
                outcome=SUCCEEDED,
                mutation_id=step.mutation_id,
                request_id=str(receipt.get("request_id", "")),
                http_status=receipt.get("http_status"),
                **common,
            )
        )
    elif step.status == StepExecution.Status.SKIPPED:
        moment = step.finished_at or step.started_at
        assert moment is not None
        found.append(
            AttemptView(
                number=0,
                started_at=moment,
                finished_at=moment,
                outcome=SKIPPED,
                error=step.skip_reason,
                **common,
            )
        )
    return found


def _repeats(previous: AttemptView | None, message: str) -> int | None:
    if previous is None or not message or previous.error != message:
        return None
    return previous.repeats or previous.number


def _platform_undone(step: StepExecution) -> str:
    undone = step.compensates if step.compensates_id else None
    return undone.platform if undone is not None else ""


def logged_attempt(entry: LoggedEntry) -> AttemptView:
    """Return the one attempt a Mutation Log entry stands for when no step record tells
    more (entries written without one): an instant, at the entry's time."""
    kind = COMPENSATION if entry.compensates_id else FORWARD
    return AttemptView(
        lane=lane_key(kind, entry.step_id),
        name=entry.step_id,
        step_id=entry.step_id,
        kind=kind,
        number=1,
        started_at=entry.created_at,
        finished_at=entry.created_at,
        outcome=FAILED if entry.status == "failed" else SUCCEEDED,
        error=entry.error_message or "",
        platform=entry.platform,
        mutation_id=entry.mutation_id,
        compensates_id=entry.compensates_id,
    )


def run_attempts(
    steps: list[StepExecution], entries: Sequence[LoggedEntry]
) -> tuple[list[Lane], list[AttemptView]]:
    """Return a run's lanes (forward steps in their order, then compensations in the order
    they ran) and its attempts by start."""
    attempts = [a for step in steps for a in step_attempts(step)]
    recorded = {step.name for step in steps}
    attempts += [logged_attempt(e) for e in entries if e.step_id not in recorded]
    attempts.sort(key=lambda a: (a.started_at, a.number))
    waiting = {
        lane_key(s.kind, s.name): s.next_attempt_at
        for s in steps
        if s.status == StepExecution.Status.PENDING and s.next_attempt_at is not None
    }
    positions = {lane_key(s.kind, s.name): s.position for s in steps}
    lanes: dict[str, Lane] = {}
    for a in attempts:
        lanes.setdefault(
            a.lane, Lane(a.lane, a.name, a.kind, a.step_id, a.platform, waiting.get(a.lane))
        )
    for s in steps:  # a step with no attempt yet, waiting for its first retry
        key = lane_key(s.kind, s.name)
        lanes.setdefault(key, Lane(key, s.name, s.kind, s.step_id, "", waiting.get(key)))
    first_seen = {key: n for n, key in enumerate(lanes)}
    ordered = sorted(
        lanes.values(),
        key=lambda lane: (
            lane.kind == COMPENSATION,
            positions.get(lane.key, 0) if lane.kind == FORWARD else 0,
            first_seen[lane.key],
        ),
    )
    return ordered, attempts


def error_groups(attempts: list[AttemptView]) -> list[ErrorGroup]:
    """Return a step's errors grouped by message, in the order each first happened: a
    platform that answers 429 twelve times is said once, with its count."""
    groups: dict[str, ErrorGroup] = {}
    for a in attempts:
        if not a.error or a.outcome == SKIPPED:
            continue
        group = groups.setdefault(a.error, ErrorGroup(a.error, []))
        group.attempts.append(a.number)
        if a.request_id:
            group.request_ids.append(a.request_id)
    return list(groups.values())
