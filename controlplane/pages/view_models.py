"""What the pages show, shaped from the rows that controlplane.pages.queries loaded."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils.dateparse import parse_datetime
from django.utils.safestring import SafeString

from controlplane.api.shapes import MutationQueryResult, decision_query
from controlplane.models import Decision, PolicyEvaluation
from controlplane.pages.timeline_svg import Mark, Tick, draw
from mutations.models import Mutation, RuntimeEvent
from runs.models import Approval, StepExecution, WorkflowRun
from runs.rollback import rollback_evidence

MINUS = "\u2212"


def decision_platforms(decision: Decision) -> list[str]:
    action = decision.action
    names = [action.get(k) for k in ("source_channel", "target_channel", "channel")]
    return [n for n in names if isinstance(n, str)]


def human_delta(payload: dict[str, Any], cadence: str = "daily") -> str:
    """Return a signed, readable change such as "-$800/day" (with a real minus sign)."""
    if "daily_budget_delta_micros" in payload:
        micros = int(payload["daily_budget_delta_micros"])
        amount = Decimal(abs(micros)) / 1_000_000
        text = f"{amount:,.2f}".removesuffix(".00")
        sign = MINUS if micros < 0 else "+"
        per = "/day" if cadence == "daily" else ""
        return f"{sign}${text}{per}"
    if "status" in payload:
        return f"status \u2192 {payload['status']}"
    return ""


@dataclass(frozen=True)
class MutationRef:
    """What the timeline knows of every mutation, however many: enough to draw and link it."""

    number: int
    mutation_id: str
    platform: str
    status: str
    step_id: str
    created_at: datetime
    compensates_id: str | None
    delta: str


@dataclass
class MutationRow:
    """A mutation listed in full on the page."""

    mutation: Mutation
    ref: MutationRef
    reverses: MutationRef | None = None
    reversed_by: list[MutationRef] = field(default_factory=list)
    earlier_calls: list[dict[str, Any]] = field(default_factory=list)  # failed attempts before it

    @property
    def number(self) -> int:
        return self.ref.number

    @property
    def delta(self) -> str:
        return self.ref.delta

    @property
    def is_compensation(self) -> bool:
        return self.mutation.actor_type == Mutation.COMPENSATION_ACTOR


@dataclass
class RunView:
    """A run with what its timeline card shows, computed from the steps loaded once."""

    run: WorkflowRun
    steps: list[StepExecution]

    @property
    def approval(self) -> Approval | None:
        return getattr(self.run, "approval", None)

    @property
    def retries(self) -> int:
        return sum(max(step.attempts - 1, 0) for step in self.steps)

    @property
    def evidence(self) -> dict[str, Any]:
        return rollback_evidence(self.run, self.steps)


@dataclass
class Timeline:
    decision: Decision
    evaluation: PolicyEvaluation | None
    runs: list[RunView]
    refs: list[MutationRef]  # every mutation, for the drawing and the counts
    rows: list[MutationRow]  # the ones listed in full
    events: list[RuntimeEvent]
    status: str

    @property
    def hidden_rows(self) -> int:
        return len(self.refs) - len(self.rows)

    @property
    def run(self) -> WorkflowRun | None:
        return self.runs[-1].run if self.runs else None

    @property
    def net_zero(self) -> bool | None:
        run = self.run
        if run is None or not run.before_state_hash or not run.after_state_hash:
            return None
        return run.before_state_hash == run.after_state_hash

    @property
    def drift(self) -> bool:
        """A compensated run whose state did not come back: the undo did not restore it."""
        run = self.run
        return bool(run and run.status == "compensated" and self.net_zero is False)

    @property
    def mutation_log(self) -> dict[str, Any]:
        """The Mutation Log query result, exactly as the API returns it (all rows shown)."""
        entries = [row.mutation for row in self.rows]
        return dict(MutationQueryResult(decision_query(self.decision.id, entries)).data)

    @property
    def svg(self) -> SafeString:
        marks = [
            Mark(
                mutation_id=ref.mutation_id,
                number=ref.number,
                platform=ref.platform,
                status=ref.status,
                at=ref.created_at,
                label=f"#{ref.number} {ref.step_id} {ref.status} {ref.delta}",
                reverses=ref.compensates_id,
            )
            for ref in self.refs
        ]
        return draw(marks, self._retry_ticks())

    def _retry_ticks(self) -> list[Tick]:
        ticks = []
        for view in self.runs:
            for step in view.steps:
                for error in step.errors:
                    at = parse_datetime(error["at"])
                    if step.mutation is not None and at is not None:
                        label = f"{step.name} attempt {error['attempt']}: {error['message']}"
                        ticks.append(Tick(platform=step.mutation.platform, at=at, label=label))
        return ticks
