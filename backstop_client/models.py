"""What the API answers, as small typed records built from its JSON.

Each record keeps the JSON it was built from in ``raw``, so that a field this version of
the client does not model is still at hand. Unknown fields are ignored, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# Run states (a decision with a run has its run's status; one without has "denied" or
# "received").
PENDING = "pending"
AWAITING_APPROVAL = "awaiting_approval"
RUNNING = "running"
COMPENSATING = "compensating"
COMPLETED = "completed"
COMPENSATED = "compensated"
FAILED = "failed"
COMPENSATION_FAILED = "compensation_failed"
REJECTED = "rejected"
EXPIRED = "expired"
CANCELLED = "cancelled"
DENIED = "denied"
RECEIVED = "received"

TERMINAL_STATUSES = frozenset(
    {COMPLETED, COMPENSATED, FAILED, COMPENSATION_FAILED, REJECTED, EXPIRED, CANCELLED}
)


def moment(value: Any) -> datetime | None:
    """Return the API's moment ("2026-04-22T18:12:11Z") as an aware datetime, or None."""
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _texts(values: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in values or ())


@dataclass(frozen=True, slots=True)
class PolicyOutcome:
    """The policy gate's verdict on a decision."""

    outcome: str  # allow | deny | require_human
    policy_version: str
    matched_rule_ids: tuple[str, ...]
    deciding_rule_ids: tuple[str, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PolicyOutcome:
        return cls(
            outcome=data["outcome"],
            policy_version=data.get("policy_version", ""),
            matched_rule_ids=_texts(data.get("matched_rule_ids")),
            deciding_rule_ids=_texts(data.get("deciding_rule_ids")),
        )


@dataclass(frozen=True, slots=True)
class Mutation:
    """One Mutation Log entry: a change made to a platform, or the compensation of one."""

    mutation_id: str
    decision_id: str
    platform: str
    mutation_type: str
    payload: dict[str, Any]
    result: dict[str, Any] | None
    status: str  # success | failed | rolled_back
    actor_type: str
    created_at: datetime | None
    error_message: str | None

    @property
    def compensates_mutation_id(self) -> str | None:
        """Return the id of the change this entry undoes, for a compensation's entry."""
        value = self.payload.get("compensates_mutation_id")
        return str(value) if value else None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Mutation:
        return cls(
            mutation_id=data["mutation_id"],
            decision_id=data["decision_id"],
            platform=data["platform"],
            mutation_type=data["mutation_type"],
            payload=data.get("payload") or {},
            result=data.get("result"),
            status=data["status"],
            actor_type=data.get("actor_type", ""),
            created_at=moment(data.get("created_at")),
            error_message=data.get("error_message"),
        )


@dataclass(frozen=True, slots=True)
class Run:
    """The workflow run a decision started (its newest, after a retry)."""

    run_id: str
    workflow_id: str
    workflow_version: int | None
    status: str
    idempotency_key: str
    current_step_id: str | None
    failed_step_id: str | None
    requested_by: str
    retry_count: int
    awaiting_approval: bool
    is_drill: bool
    before_state_hash: str | None
    after_state_hash: str | None
    created_at: datetime | None
    updated_at: datetime | None
    finished_at: datetime | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        return cls(
            run_id=data["run_id"],
            workflow_id=data["workflow_id"],
            workflow_version=data.get("workflow_version"),
            status=data["status"],
            idempotency_key=data.get("idempotency_key", ""),
            current_step_id=data.get("current_step_id"),
            failed_step_id=data.get("failed_step_id"),
            requested_by=data.get("requested_by", ""),
            retry_count=data.get("retry_count", 0),
            awaiting_approval=bool(data.get("awaiting_approval")),
            is_drill=bool(data.get("is_drill")),
            before_state_hash=data.get("before_state_hash"),
            after_state_hash=data.get("after_state_hash"),
            created_at=moment(data.get("created_at")),
            updated_at=moment(data.get("updated_at")),
            finished_at=moment(data.get("finished_at")),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    """A decision as Backstop holds it: where it stands, the gate's verdict, its run, and
    (from ``get`` and ``wait``) its Mutation Log entries.

    ``status`` is the run's status, or ``denied`` / ``received`` for a decision without a
    run. ``net_change`` is the verdict a person reads: ``zero`` (undone without a trace),
    ``drift`` (the state differs after an undo), ``applied`` (completed), ``pending``
    (not finished) or ``none`` (nothing ran).
    """

    id: str
    type: str
    status: str
    terminal: bool
    run_id: str | None
    policy: PolicyOutcome | None
    before_state_hash: str | None
    after_state_hash: str | None
    net_change: str
    mutations: tuple[Mutation, ...]
    run: Run | None
    summary: str
    action: dict[str, Any]
    requested_by: str
    trace_id: str
    received_at: datetime | None
    payload_hash: str
    # propose: True when this call created it, False when it was stored already; else None.
    created: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def awaiting_approval(self) -> bool:
        """Return whether a person must approve it before it runs."""
        return self.status == AWAITING_APPROVAL

    @property
    def denied(self) -> bool:
        return self.status == DENIED

    @classmethod
    def from_json(cls, data: dict[str, Any], *, created: bool | None = None) -> Decision:
        """Build a decision from the API's DecisionOut or DecisionDetail shape."""
        evaluation = data.get("policy_evaluation")
        policy = PolicyOutcome.from_json(evaluation) if evaluation else None
        run = Run.from_json(data["run"]) if data.get("run") else None
        if run is not None:
            status, terminal = run.status, run.terminal
        else:
            status = DENIED if policy is not None and policy.outcome == "deny" else RECEIVED
            terminal = True  # nothing will run
        return cls(
            id=data["id"],
            type=data.get("type", ""),
            status=status,
            terminal=terminal,
            run_id=run.run_id if run else None,
            policy=policy,
            before_state_hash=run.before_state_hash if run else None,
            after_state_hash=run.after_state_hash if run else None,
            net_change=net_change(run),
            mutations=tuple(Mutation.from_json(m) for m in data.get("mutations") or ()),
            run=run,
            summary=data.get("summary", ""),
            action=data.get("action") or {},
            requested_by=data.get("requested_by", ""),
            trace_id=data.get("trace_id", ""),
            received_at=moment(data.get("received_at")),
            payload_hash=data.get("payload_hash", ""),
            created=created,
            raw=data,
        )


def net_change(run: Run | None) -> str:
    """Return the net-change verdict of a decision's run, as the MCP tools give it."""
    if run is None or run.status in {REJECTED, EXPIRED}:
        return "none"
    if not run.terminal or run.after_state_hash is None:
        return "pending"
    if run.status == COMPLETED:
        return "applied"
    return "zero" if run.after_state_hash == run.before_state_hash else "drift"


@dataclass(frozen=True, slots=True)
class PolicyPreview:
    """What the active policy does with a typical decision of a type."""

    assumes: dict[str, Any]
    policy_version: str | None
    outcome: str
    deciding_rule_ids: tuple[str, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PolicyPreview:
        return cls(
            assumes=data.get("assumes") or {},
            policy_version=data.get("policy_version"),
            outcome=data["outcome"],
            deciding_rule_ids=_texts(data.get("deciding_rule_ids")),
        )


@dataclass(frozen=True, slots=True)
class Action:
    """A decision type one may propose: its workflow, steps, and the action it takes."""

    decision_type: str
    workflow_id: str
    workflow_version: int
    description: str
    steps: tuple[str, ...]
    reversibility: str  # reversible | compensatable | irreversible
    action_schema: dict[str, Any]  # the JSON Schema of the decision's "action"
    policy_preview: PolicyPreview | None

    @property
    def required_fields(self) -> tuple[str, ...]:
        """Return the fields the decision's action must carry."""
        return _texts(self.action_schema.get("required"))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Action:
        preview = data.get("policy_preview")
        return cls(
            decision_type=data["decision_type"],
            workflow_id=data["workflow_id"],
            workflow_version=data["workflow_version"],
            description=data.get("description", ""),
            steps=_texts(data.get("steps")),
            reversibility=data.get("reversibility", ""),
            action_schema=data.get("action_schema") or {},
            policy_preview=PolicyPreview.from_json(preview) if preview else None,
        )
