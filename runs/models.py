"""The execution plane's records: workflow runs and their step executions."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from mutations.connectors import Change
from mutations.ids import new_id


def _run_id() -> str:
    return new_id("wf")


class RunStatus(models.TextChoices):
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


TERMINAL_STATUSES = frozenset(
    {
        RunStatus.COMPLETED,
        RunStatus.COMPENSATED,
        RunStatus.FAILED,
        RunStatus.COMPENSATION_FAILED,
        RunStatus.REJECTED,
        RunStatus.EXPIRED,
        RunStatus.CANCELLED,
    }
)
RUNNABLE_STATUSES = frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.COMPENSATING})


class Engine(models.TextChoices):
    """What executes a run: Backstop's own runners, or a Temporal cluster."""

    BUILTIN = "builtin"
    TEMPORAL = "temporal"


class WorkflowRunQuerySet(models.QuerySet["WorkflowRun"]):
    def runnable(self) -> WorkflowRunQuerySet:
        return self.filter(status__in=RUNNABLE_STATUSES)


class WorkflowRun(models.Model):
    run_id = models.CharField(primary_key=True, max_length=32, default=_run_id)
    org = models.ForeignKey("controlplane.Organization", on_delete=models.PROTECT)
    workspace = models.ForeignKey("controlplane.Workspace", on_delete=models.PROTECT)
    decision = models.ForeignKey(
        "controlplane.Decision", on_delete=models.PROTECT, related_name="runs"
    )
    workflow_id = models.CharField(max_length=100)
    workflow_version = models.PositiveIntegerField()
    status = models.CharField(max_length=30, choices=RunStatus.choices, default=RunStatus.PENDING)
    idempotency_key = models.CharField(max_length=200, unique=True)
    current_step_id = models.CharField(max_length=100, blank=True)
    requested_by = models.CharField(max_length=150)
    retry_count = models.PositiveIntegerField(default=0)
    awaiting_approval = models.BooleanField(default=False)
    is_drill = models.BooleanField(default=False)
    input = models.JSONField(help_text="The decision the run executes, as received.")
    scope = models.JSONField(help_text="Platform objects the run may change, by platform.")
    trace_id = models.CharField(max_length=32)
    policy_ids = models.JSONField(default=list)
    failed_step_id = models.CharField(max_length=100, null=True)
    before_state_hash = models.CharField(max_length=20, null=True)
    after_state_hash = models.CharField(max_length=20, null=True)
    # The scope's state the hashes were taken of: what the state comparison shows.
    before_state = models.JSONField(null=True)
    after_state = models.JSONField(null=True)
    next_wake_at = models.DateTimeField()
    engine = models.CharField(max_length=16, choices=Engine.choices, default=Engine.BUILTIN)
    # When the run was handed to an engine outside Backstop (Temporal: its workflow started).
    dispatched_at = models.DateTimeField(null=True)
    leased_by = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True)
    holds_scope = models.BooleanField(default=False)
    rollback_reason = models.CharField(max_length=50, blank=True)
    rollback_requested_by = models.CharField(max_length=150, blank=True)
    rollback_lock_holder = models.CharField(max_length=100, blank=True)
    rollback_lock_expires_at = models.DateTimeField(null=True)
    rollback_started_at = models.DateTimeField(null=True)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True)

    objects = WorkflowRunQuerySet.as_manager()

    class Meta:
        ordering: ClassVar[list[str]] = ["created_at", "run_id"]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(
                fields=["next_wake_at"],
                condition=Q(status__in=["pending", "running", "compensating"]),
                name="run_due",
            ),
            models.Index(
                fields=["org", "created_at"],
                condition=Q(status="awaiting_approval"),
                name="run_awaiting_approval",
            ),
        ]

    def __str__(self) -> str:
        return self.run_id

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class StepExecution(models.Model):
    """One forward step or one compensation of a run, across all its attempts."""

    class Kind(models.TextChoices):
        FORWARD = "forward"
        COMPENSATION = "compensation"

    class Status(models.TextChoices):
        PENDING = "pending"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SKIPPED = "skipped"

    run = models.ForeignKey(  # indexed by one_execution_per_step below
        WorkflowRun, on_delete=models.PROTECT, related_name="steps", db_index=False
    )
    org = models.ForeignKey("controlplane.Organization", on_delete=models.PROTECT)
    step_id = models.CharField(max_length=100, help_text="The forward step, for both kinds.")
    name = models.CharField(max_length=100, help_text="The forward step or compensation id.")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    position = models.PositiveIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    idempotency_key = models.CharField(max_length=200, unique=True)
    next_attempt_at = models.DateTimeField(null=True)
    last_error = models.TextField(blank=True)
    errors = models.JSONField(default=list, help_text="One entry per failed attempt.")
    mutation = models.ForeignKey(
        "mutations.Mutation", on_delete=models.PROTECT, null=True, related_name="+"
    )
    compensates = models.ForeignKey(
        "mutations.Mutation", on_delete=models.PROTECT, null=True, related_name="+"
    )
    skip_reason = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True)
    finished_at = models.DateTimeField(null=True)

    class Meta:
        ordering: ClassVar[list[str]] = ["run", "started_at", "id"]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["run", "step_id", "kind"], name="one_execution_per_step"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.run_id} {self.name}"

    @property
    def applied_change(self) -> Change | None:
        """Return the change this step applied, which its compensation inverts."""
        if self.status != self.Status.SUCCEEDED or self.mutation is None:
            return None
        m = self.mutation
        return Change(
            platform=m.platform, mutation_type=m.mutation_type, payload=m.payload, target=m.target
        )

    @property
    def applied_mutation_id(self) -> str | None:
        return self.mutation_id if self.status == self.Status.SUCCEEDED else None


class ScopeLock(models.Model):
    """A platform object held by one started run, so that its state hashes prove its own effect.

    Runs whose scopes overlap execute one after the other: the unique key is the arbiter.
    """

    # Indexed by one_run_per_scope_key below.
    org = models.ForeignKey("controlplane.Organization", on_delete=models.CASCADE, db_index=False)
    key = models.CharField(max_length=300)
    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="scope_locks")
    acquired_at = models.DateTimeField()

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["org", "key"], name="one_run_per_scope_key"),
        ]

    def __str__(self) -> str:
        return f"{self.key} held by {self.run_id}"


def _approval_id() -> str:
    return new_id("apr")


class Approval(models.Model):
    """People's decision on a held run, bound to the exact decision payload it approves.

    It is approved once ``required`` distinct approvers voted for it (one ApprovalVote
    each), rejected by the first vote against it. ``decided_by`` is whoever settled it.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        APPROVED = "approved"
        REJECTED = "rejected"
        EXPIRED = "expired"

    id = models.CharField(primary_key=True, max_length=32, default=_approval_id)
    org = models.ForeignKey("controlplane.Organization", on_delete=models.PROTECT)
    run = models.OneToOneField(WorkflowRun, on_delete=models.PROTECT, related_name="approval")
    payload_hash = models.CharField(max_length=64)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.PENDING)
    requested_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True)
    comment = models.TextField(blank=True)
    required = models.PositiveSmallIntegerField(
        default=1, help_text="Distinct approvers needed, from the policy rule that held the run."
    )
    approver_roles = models.JSONField(
        default=list, help_text="The roles that may approve; empty: every approving role."
    )

    class Meta:
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["expires_at"], condition=Q(status="pending"), name="approval_due"),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.status}"

    @property
    def approved_by(self) -> list[str]:
        """Return who approved so far, in order (from prefetched votes when there are)."""
        votes = sorted(self.votes.all(), key=lambda v: (v.decided_at, v.pk))
        return [v.actor for v in votes if v.verdict == ApprovalVote.Verdict.APPROVE]

    @property
    def approvals_given(self) -> int:
        return len(self.approved_by)

    @property
    def approvals_missing(self) -> int:
        """Return how many more approvers the run waits for (0 once decided)."""
        if self.status != self.Status.PENDING:
            return 0
        return max(self.required - self.approvals_given, 0)


class ApprovalVote(models.Model):
    """One approver's verdict on a held run: the unique pair is the arbiter of one vote each."""

    class Verdict(models.TextChoices):
        APPROVE = "approve"
        REJECT = "reject"

    approval = models.ForeignKey(Approval, on_delete=models.PROTECT, related_name="votes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    actor = models.CharField(max_length=150, help_text="How events name the voter.")
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    payload_hash = models.CharField(max_length=64, help_text="The decision payload voted on.")
    comment = models.TextField(blank=True)
    decided_at = models.DateTimeField()

    class Meta:
        ordering: ClassVar[list[str]] = ["decided_at", "id"]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["approval", "user"], name="one_vote_per_approver"),
        ]

    def __str__(self) -> str:
        return f"{self.approval_id} {self.actor} {self.verdict}"
