"""What a run does next, decided from its definition and step records alone (no database)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from mutations.connectors import Change
from runs.models import RunStatus, StepExecution
from runs.retry import RetryPolicy
from runs.saga import (
    COMPENSATION,
    COMPENSATION_COMPLETE,
    COMPENSATION_INCOMPLETE,
    FORWARD,
    WORKFLOW_COMPLETE,
    Action,
    Finish,
    Wait,
    next_move,
)
from runs.workflows import Compensation, Reversibility, Step, Workflow

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DECISION = {"amount": 250, "source": "meta_1", "target": "google_1"}
RUN_KEY = "dec_TEST-attempt-1"
Status = StepExecution.Status


def _budget(platform: str, target: str, sign: int) -> Any:
    def build(decision: dict[str, Any]) -> Change:
        return Change(
            platform=platform,
            mutation_type="adjust_budget",
            payload={"delta": sign * decision["amount"]},
            target={"campaign": decision[target]},
        )

    return build


def _inverse(applied: Change) -> Change:
    return Change(
        platform=applied.platform,
        mutation_type=applied.mutation_type,
        payload={"delta": -applied.payload["delta"]},
        target=applied.target,
    )


WORKFLOW = Workflow(
    id="test_saga",
    version=1,
    decision_type="test_saga",
    steps=(
        Step(
            id="debit",
            build=_budget("meta", "source", -1),
            compensation=Compensation(id="refund", build=_inverse, window=45.0),
        ),
        Step(
            id="announce",
            build=lambda d: Change(platform="meta", mutation_type="post", payload={}),
            no_rollback_reason="a sent announcement cannot be unsent",
            reversibility=Reversibility.IRREVERSIBLE,
        ),
        Step(
            id="credit",
            build=_budget("google", "target", 1),
            compensation=Compensation(
                id="reverse_credit", build=_inverse, retry=RetryPolicy(max_attempts=9)
            ),
        ),
        Step(id="confirm", build=_budget("google", "target", 0), no_rollback_reason="read only"),
    ),
    scope=lambda d: {},
    validate_action=lambda a: {},
)


@dataclass
class Record:
    """A step execution as the planner sees it."""

    step_id: str
    kind: str
    status: str
    position: int
    next_attempt_at: datetime | None = None
    change: Change | None = None
    mutation_id: str | None = None

    @property
    def applied_change(self) -> Change | None:
        return self.change if self.status == Status.SUCCEEDED else None

    @property
    def applied_mutation_id(self) -> str | None:
        return self.mutation_id if self.status == Status.SUCCEEDED else None


Records = dict[tuple[str, str], Record]


def applied(records: Records, step_id: str) -> None:
    """Record a forward step as applied, with the change it built and a mutation id."""
    position = [s.id for s in WORKFLOW.steps].index(step_id)
    change = WORKFLOW.step(step_id).build(DECISION)
    records[(step_id, FORWARD)] = Record(
        step_id, FORWARD, Status.SUCCEEDED, position, change=change, mutation_id=f"mut_{step_id}"
    )


def failed(records: Records, step_id: str, kind: str = FORWARD) -> None:
    position = [s.id for s in WORKFLOW.steps].index(step_id)
    records[(step_id, kind)] = Record(step_id, kind, Status.FAILED, position)


def move(
    records: Records,
    *,
    compensating: bool = False,
    failed_step_id: str | None = None,
    now: datetime = NOW,
) -> Action | Wait | Finish:
    return next_move(
        WORKFLOW,
        DECISION,
        compensating=compensating,
        failed_step_id=failed_step_id,
        records=records,
        now=now,
    )


def rollback(records: Records) -> list[tuple[str, str, str]]:
    """Drive a compensating run to its end, each compensation succeeding unless it has to
    be skipped; return (step, compensation, skip reason) in the order they came."""
    seen: list[tuple[str, str, str]] = []
    while isinstance(action := move(records, compensating=True), Action):
        assert action.kind == COMPENSATION
        assert len(seen) < len(WORKFLOW.steps), f"{action.name} came again after {seen}"
        seen.append((action.step_id, action.name, action.skip_reason))
        status = Status.SKIPPED if action.skip_reason else Status.SUCCEEDED
        records[(action.step_id, COMPENSATION)] = Record(
            action.step_id, COMPENSATION, status, action.position
        )
    return seen


# ---- forward -----------------------------------------------------------------------------


def test_a_new_run_starts_with_its_first_step() -> None:
    action = move({})
    assert isinstance(action, Action)
    assert (action.step_id, action.name, action.kind, action.position) == (
        "debit",
        "debit",
        FORWARD,
        0,
    )
    assert action.change.payload == {"delta": -250}
    assert action.change.target == {"campaign": "meta_1"}
    assert action.idempotency_key(RUN_KEY) == f"{RUN_KEY}:debit"
    assert action.skip_reason == ""


def test_the_next_step_is_the_first_not_yet_applied() -> None:
    records: Records = {}
    applied(records, "debit")
    applied(records, "announce")
    action = move(records)
    assert isinstance(action, Action)
    assert (action.step_id, action.kind, action.position) == ("credit", FORWARD, 2)
    assert action.change.payload == {"delta": 250}
    assert action.change.target == {"campaign": "google_1"}


def test_a_run_whose_steps_all_applied_completes() -> None:
    records: Records = {}
    for step in WORKFLOW.steps:
        applied(records, step.id)
    assert move(records) == Finish(RunStatus.COMPLETED, WORKFLOW_COMPLETE)


# ---- retries -----------------------------------------------------------------------------


def test_a_retryable_failure_waits_until_its_next_attempt_is_due() -> None:
    records: Records = {}
    applied(records, "debit")
    due = NOW + timedelta(seconds=4)
    records[("announce", FORWARD)] = Record(
        "announce", FORWARD, Status.PENDING, 1, next_attempt_at=due
    )
    assert move(records) == Wait(until=due)
    assert move(records, now=due - timedelta(milliseconds=1)) == Wait(until=due)


def test_a_due_retry_tries_the_same_step_with_the_same_key() -> None:
    records: Records = {}
    applied(records, "debit")
    due = NOW - timedelta(seconds=1)
    records[("announce", FORWARD)] = Record(
        "announce", FORWARD, Status.PENDING, 1, next_attempt_at=due
    )
    action = move(records)
    assert isinstance(action, Action)
    assert (action.step_id, action.kind) == ("announce", FORWARD)
    assert action.idempotency_key(RUN_KEY) == f"{RUN_KEY}:announce"


def test_a_compensation_waiting_for_its_retry_waits_too() -> None:
    records: Records = {}
    applied(records, "debit")
    failed(records, "announce")
    due = NOW + timedelta(seconds=2)
    records[("debit", COMPENSATION)] = Record(
        "debit", COMPENSATION, Status.PENDING, 0, next_attempt_at=due
    )
    assert move(records, compensating=True) == Wait(until=due)


# ---- failure and compensation ------------------------------------------------------------


def test_a_first_step_that_failed_for_good_fails_the_run_with_nothing_to_undo() -> None:
    records: Records = {}
    failed(records, "debit")
    assert move(records, failed_step_id="debit") == Finish(RunStatus.FAILED, "debit")


def test_compensations_undo_the_applied_steps_last_first() -> None:
    records: Records = {}
    applied(records, "debit")
    applied(records, "credit")
    failed(records, "confirm")
    first = move(records, compensating=True)
    assert isinstance(first, Action)
    assert (first.step_id, first.name, first.kind, first.position) == (
        "credit",
        "reverse_credit",
        COMPENSATION,
        2,
    )
    assert first.compensates_mutation_id == "mut_credit"
    assert first.change.payload == {"delta": -250}
    assert first.change.target == {"campaign": "google_1"}
    assert first.retry.max_attempts == 9
    assert first.idempotency_key(RUN_KEY) == f"{RUN_KEY}:credit:compensate"
    assert rollback(records) == [("credit", "reverse_credit", ""), ("debit", "refund", "")]


def test_a_compensation_carries_its_time_window() -> None:
    records: Records = {}
    applied(records, "debit")
    failed(records, "announce")
    action = move(records, compensating=True)
    assert isinstance(action, Action)
    assert (action.name, action.window) == ("refund", 45.0)
    assert action.change.payload == {"delta": 250}


def test_a_step_without_compensation_is_skipped_with_its_reason() -> None:
    records: Records = {}
    applied(records, "debit")
    applied(records, "announce")
    applied(records, "credit")
    failed(records, "confirm")
    assert rollback(records) == [
        ("credit", "reverse_credit", ""),
        ("announce", "announce", "a sent announcement cannot be unsent"),
        ("debit", "refund", ""),
    ]


def test_steps_never_applied_are_not_compensated() -> None:
    records: Records = {}
    applied(records, "debit")
    failed(records, "announce")
    assert rollback(records) == [("debit", "refund", "")]


def test_a_failed_compensation_is_not_retried_and_the_rest_still_runs() -> None:
    records: Records = {}
    applied(records, "debit")
    applied(records, "credit")
    failed(records, "confirm")
    failed(records, "credit", COMPENSATION)
    assert rollback(records) == [("debit", "refund", "")]


# ---- how a rollback finishes ---------------------------------------------------------------


def test_a_run_whose_compensations_all_succeeded_is_compensated() -> None:
    records: Records = {}
    applied(records, "debit")
    applied(records, "credit")
    failed(records, "confirm")
    rollback(records)
    assert move(records, compensating=True) == Finish(RunStatus.COMPENSATED, COMPENSATION_COMPLETE)


def test_a_failed_compensation_leaves_the_run_compensation_failed() -> None:
    records: Records = {}
    applied(records, "debit")
    applied(records, "credit")
    failed(records, "confirm")
    failed(records, "credit", COMPENSATION)
    rollback(records)
    assert move(records, compensating=True) == Finish(
        RunStatus.COMPENSATION_FAILED, COMPENSATION_INCOMPLETE
    )


def test_a_skipped_compensation_leaves_the_run_compensation_failed() -> None:
    records: Records = {}
    applied(records, "debit")
    applied(records, "announce")
    failed(records, "credit")
    rollback(records)
    assert move(records, compensating=True) == Finish(
        RunStatus.COMPENSATION_FAILED, COMPENSATION_INCOMPLETE
    )
