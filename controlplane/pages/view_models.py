"""What the pages show, shaped from the rows that controlplane.pages.queries loaded."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cached_property, lru_cache
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from controlplane.api.shapes import MutationQueryResult, decision_query
from controlplane.models import Decision, PolicyEvaluation
from controlplane.pages import attempts_table, state_comparison
from controlplane.pages.attempts import (
    SKIPPED,
    AttemptView,
    ErrorGroup,
    Lane,
    error_groups,
    lane_key,
    run_attempts,
)
from controlplane.pages.timeline_counts import draw_counts
from controlplane.pages.timeline_svg import draw
from controlplane.pages.timeline_track import ApprovalSpan, Track
from mutations.hashing import state_hash
from mutations.models import Mutation, RuntimeEvent
from runs.models import (
    TERMINAL_STATUSES,
    Approval,
    Engine,
    RunStatus,
    StepExecution,
    WorkflowRun,
)
from runs.rollback import rollback_evidence

MINUS = "\u2212"
ENGINE_NAMES: dict[str, str] = {Engine.BUILTIN: "Backstop's runners", Engine.TEMPORAL: "Temporal"}
ATTEMPT_ROWS = 100  # attempts listed in the table before "show all"


def decision_platforms(decision: Decision) -> list[str]:
    action = decision.action
    names = [action.get(k) for k in ("source_channel", "target_channel", "channel")]
    return [n for n in names if isinstance(n, str)]


def change_delta(micros: Any, status: Any, cadence: str = "daily") -> str:
    """Return the words of a change from its budget delta (micros) or its new status."""
    if micros is not None:
        return _budget_delta(int(micros), cadence)
    if status is not None:
        return f"status \u2192 {status}"
    return ""


@lru_cache(maxsize=1024)
def _budget_delta(micros: int, cadence: str) -> str:
    """Format a budget change once per value: a decision's thousand changes repeat a few."""
    amount = Decimal(abs(micros)) / 1_000_000
    text = f"{amount:,.2f}".removesuffix(".00")
    sign = MINUS if micros < 0 else "+"
    per = "/day" if cadence == "daily" else ""
    return f"{sign}${text}{per}"


def breakable(key: str) -> SafeString:
    """Return a key with line-break opportunities at its separators only, so that a long
    idempotency key wraps between its parts on a phone and never inside an id."""
    parts = escape(key).replace(":", "<wbr>:").replace("-attempt-", "<wbr>-attempt-")
    return mark_safe(parts)


@dataclass(slots=True)
class MutationRef:
    """What the timeline knows of every mutation, however many: enough to draw, link and
    replay it."""

    number: int
    mutation_id: str
    platform: str
    status: str
    step_id: str
    created_at: datetime
    compensates_id: str | None
    delta: str
    run_id: str | None = None
    mutation_type: str = ""
    payload_json: str | None = None
    target_json: str | None = None
    result_json: str | None = None
    error_message: str | None = None

    @property
    def payload(self) -> dict[str, Any]:
        value = json.loads(self.payload_json) if self.payload_json else {}
        return value if isinstance(value, dict) else {}

    @property
    def target(self) -> dict[str, Any]:
        value = json.loads(self.target_json) if self.target_json else {}
        return value if isinstance(value, dict) else {}

    @property
    def result(self) -> Any:
        return json.loads(self.result_json) if self.result_json else None


@dataclass
class MutationRow:
    """A mutation listed in full on the page."""

    mutation: Mutation
    ref: MutationRef
    reverses: MutationRef | None = None
    reversed_by: list[MutationRef] = field(default_factory=list)
    calls: list[AttemptView] = field(default_factory=list)  # the attempts of its step

    @property
    def number(self) -> int:
        return self.ref.number

    @property
    def delta(self) -> str:
        return self.ref.delta

    @property
    def is_compensation(self) -> bool:
        return self.mutation.actor_type == Mutation.COMPENSATION_ACTOR


@dataclass(frozen=True)
class CurrentState:
    """The scope's state read for the page while its run is live, or why it could not be."""

    snapshot: dict[str, Any] | None
    error: str = ""


@dataclass(frozen=True)
class StepRow:
    """A step or compensation on the run page, its attempts counted across retried rounds."""

    step: StepExecution
    attempts: list[AttemptView]

    @property
    def tries(self) -> int:
        return sum(a.outcome != SKIPPED for a in self.attempts)

    @property
    def errors(self) -> list[ErrorGroup]:
        return error_groups(self.attempts)

    @property
    def duration(self) -> timedelta | None:
        if not self.attempts:
            return None
        return max(a.finished_at for a in self.attempts) - self.attempts[0].started_at

    @property
    def key(self) -> SafeString:
        return breakable(self.step.idempotency_key)

    @property
    def request_id(self) -> str:
        last = self.attempts[-1] if self.attempts else None
        return last.request_id if last is not None and last.outcome == "succeeded" else ""


@dataclass
class RunView:
    """A run with what its cards show, computed from rows loaded once."""

    run: WorkflowRun
    steps: list[StepExecution]
    entries: list[MutationRef] = field(default_factory=list)  # its Mutation Log entries
    started_at: datetime | None = None  # when it started running (its run_started event)
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    current: CurrentState | None = None  # the scope read now, while it is live
    all_rows: bool = False

    @property
    def live(self) -> bool:
        return self.run.status not in TERMINAL_STATUSES

    @property
    def approval(self) -> Approval | None:
        return getattr(self.run, "approval", None)

    @property
    def key(self) -> SafeString:
        return breakable(self.run.idempotency_key)

    @property
    def engine(self) -> str:
        return ENGINE_NAMES.get(self.run.engine, self.run.engine)

    @property
    def temporal_url(self) -> str | None:
        """Return the run's workflow in the Temporal Web UI (its workflow id is the run
        id), or None: not on Temporal, or no TEMPORAL_UI_URL."""
        if self.run.engine != Engine.TEMPORAL or not settings.TEMPORAL_UI_URL:
            return None
        namespace = quote(settings.TEMPORAL_NAMESPACE, safe="")
        return f"{settings.TEMPORAL_UI_URL}/namespaces/{namespace}/workflows/{self.run.run_id}"

    # ---- times ----------------------------------------------------------------------------

    @property
    def started(self) -> datetime | None:
        """Return when the run started running: not when it was created, which for a held
        run is when it began to wait for an approver."""
        if self.started_at is not None:
            return self.started_at
        return self.attempts[0].started_at if self.attempts else None

    @property
    def duration(self) -> timedelta | None:
        if self.started is None:
            return None
        return (self.run.finished_at or self.now) - self.started

    @property
    def approval_wait(self) -> timedelta | None:
        approval = self.approval
        if approval is None:
            return None
        return (approval.decided_at or self.now) - approval.requested_at

    # ---- attempts and the drawing -----------------------------------------------------------

    @cached_property
    def _attempts(self) -> tuple[list[Lane], list[AttemptView]]:
        return run_attempts(self.steps, self.entries)

    @property
    def lanes(self) -> list[Lane]:
        return self._attempts[0]

    @property
    def attempts(self) -> list[AttemptView]:
        return self._attempts[1]

    @property
    def listed_attempts(self) -> list[AttemptView]:
        return self.attempts if self.all_rows else self.attempts[:ATTEMPT_ROWS]

    @property
    def hidden_attempts(self) -> int:
        return len(self.attempts) - len(self.listed_attempts)

    @property
    def retries(self) -> int:
        """Return the attempts made after each step's first one."""
        tried = [a for a in self.attempts if a.outcome != SKIPPED]
        return len(tried) - len({a.lane for a in tried})

    @cached_property
    def track(self) -> Track:
        """Return the run as the drawing sees it: lanes, attempts, span and approval."""
        approval = self.approval
        span = None
        if approval is not None:
            who = approval.decided_by.get_username() if approval.decided_by else ""
            span = ApprovalSpan(approval.requested_at, approval.decided_at, approval.status, who)
        return Track(
            run_id=self.run.run_id,
            lanes=self.lanes,
            attempts=self.attempts,
            start=self.run.created_at,
            end=self.run.finished_at or self.now,
            approval=span,
            started_at=self.started,
        )

    @property
    def svg(self) -> SafeString:
        track = self.track
        return draw_counts(track) if track.too_many else draw(track)

    @property
    def drawn_as_counts(self) -> bool:
        return self.track.too_many

    @property
    def attempt_rows(self) -> SafeString:
        """Return the attempts table's rows (the first ATTEMPT_ROWS, or all)."""
        return attempts_table.rows(self.listed_attempts, self.run.created_at)

    @property
    def step_rows(self) -> list[StepRow]:
        lanes = self._by_lane[1]
        return [StepRow(s, lanes.get(lane_key(s.kind, s.name), [])) for s in self.steps]

    @property
    def compensation_rows(self) -> list[StepRow]:
        """Return the compensations in the order they were dispatched."""
        return [row for row in self.step_rows if row.step.kind == StepExecution.Kind.COMPENSATION]

    @cached_property
    def _by_lane(self) -> tuple[dict[str, str], dict[str, list[AttemptView]]]:
        lanes: dict[str, list[AttemptView]] = {}
        for attempt in self.attempts:
            lanes.setdefault(attempt.lane, []).append(attempt)
        wrote = {a.mutation_id: a.lane for a in self.attempts if a.mutation_id}
        return wrote, lanes

    def calls_of(self, mutation_id: str) -> list[AttemptView]:
        """Return the attempts of the step whose Mutation Log entry is ``mutation_id``."""
        wrote, lanes = self._by_lane
        lane = wrote.get(mutation_id)
        return lanes[lane] if lane else []

    # ---- evidence ---------------------------------------------------------------------------

    @cached_property
    def evidence(self) -> dict[str, Any]:
        return rollback_evidence(self.run, self.steps)

    @cached_property
    def comparison(self) -> state_comparison.StateComparison:
        run = self.run
        live = self.live and run.status in (RunStatus.RUNNING, RunStatus.COMPENSATING)
        after, after_hash, error = run.after_state, run.after_state_hash, ""
        if live and self.current is not None:
            after, error = self.current.snapshot, self.current.error
            after_hash = state_hash_of(after)
        currency = str((run.input.get("action") or {}).get("currency", "USD"))
        return state_comparison.compare(
            status=run.status,
            before=run.before_state,
            after=after,
            before_hash=run.before_state_hash,
            after_hash=after_hash,
            scope=run.scope or {},
            changes=self.entries,
            currency=currency,
            live=live,
            read_error=error,
        )


def state_hash_of(snapshot: dict[str, Any] | None) -> str | None:
    return state_hash(snapshot) if snapshot is not None else None


@dataclass(frozen=True)
class EventKind:
    kind: str
    count: int


@dataclass
class Timeline:
    decision: Decision
    evaluation: PolicyEvaluation | None
    runs: list[RunView]
    refs: list[MutationRef]  # every mutation, for the counts
    rows: list[MutationRow]  # the ones listed in full
    events: list[RuntimeEvent]
    status: str
    event_kind: str = ""  # the events listed: one kind, or all

    @property
    def hidden_rows(self) -> int:
        return len(self.refs) - len(self.rows)

    @property
    def latest(self) -> RunView | None:
        return self.runs[-1] if self.runs else None

    @property
    def run(self) -> WorkflowRun | None:
        return self.runs[-1].run if self.runs else None

    @property
    def event_kinds(self) -> list[EventKind]:
        """Return each kind of event the decision has, with its count, in the order of
        the lifecycle."""
        counts = Counter(e.kind for e in self.events)
        return [EventKind(k, counts[k]) for k in RuntimeEvent.Kind.values if counts[k]]

    @property
    def shown_events(self) -> list[RuntimeEvent]:
        if not self.event_kind:
            return self.events
        return [e for e in self.events if e.kind == self.event_kind]

    @property
    def mutation_log(self) -> dict[str, Any]:
        """The Mutation Log query result, exactly as the API returns it (all rows shown)."""
        entries = [row.mutation for row in self.rows]
        return dict(MutationQueryResult(decision_query(self.decision.id, entries)).data)
