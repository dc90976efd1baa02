"""The evidence plane: the append-only Mutation Log, runtime events and the sandbox platforms."""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.db import models

from mutations.ids import new_id


class AppendOnlyError(Exception):
    """Raised on an attempt to change or remove an evidence row."""


class AppendOnlyQuerySet(models.QuerySet[Any]):
    """Refuses the bulk changes that would bypass ``save`` and ``delete``."""

    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only; write a new row.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only and cannot be deleted.")

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only; write a new row.")


class AppendOnlyModel(models.Model):
    """A row that can be inserted once and never updated or deleted (and, on PostgreSQL,
    triggers refuse UPDATE, DELETE and TRUNCATE in the database too)."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError(f"{type(self).__name__} rows are append-only; write a new row.")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError(f"{type(self).__name__} rows are append-only and cannot be deleted.")


def _mutation_id() -> str:
    return new_id("mut")


def _event_id() -> str:
    return new_id("evt")


class Mutation(AppendOnlyModel):
    """One change applied (or attempted) on a platform, or its compensation."""

    class Status(models.TextChoices):
        SUCCESS = "success"
        FAILED = "failed"
        ROLLED_BACK = "rolled_back"

    COMPENSATION_ACTOR = "compensation"

    mutation_id = models.CharField(primary_key=True, max_length=32, default=_mutation_id)
    # Both are the first column of a composite index below: no index of their own.
    org = models.ForeignKey("controlplane.Organization", on_delete=models.PROTECT, db_index=False)
    decision = models.ForeignKey(
        "controlplane.Decision", on_delete=models.PROTECT, related_name="mutations", db_index=False
    )
    run = models.ForeignKey(
        "runs.WorkflowRun", on_delete=models.PROTECT, related_name="mutations", null=True
    )
    step_id = models.CharField(max_length=100)
    idempotency_key = models.CharField(max_length=200)
    platform = models.CharField(max_length=50)
    mutation_type = models.CharField(max_length=50)
    target = models.JSONField(default=dict, help_text="The platform object the change addressed.")
    payload = models.JSONField(default=dict)
    result = models.JSONField(null=True)
    status = models.CharField(max_length=20, choices=Status.choices)
    actor_type = models.CharField(max_length=100)
    compensates = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, related_name="compensations"
    )
    created_at = models.DateTimeField()
    error_message = models.TextField(null=True)
    receipt = models.JSONField(
        default=dict, blank=True, help_text="How the platform answered: HTTP status, request id."
    )
    # The org's hash chain: each entry commits to the one before it (mutations/chain.py).
    sequence = models.BigIntegerField(default=0)
    prev_hash = models.CharField(max_length=64, default="")
    entry_hash = models.CharField(max_length=64, default="")

    class Meta:
        ordering: ClassVar[list[str]] = ["created_at", "mutation_id"]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["decision", "created_at"], name="mutation_decision_time"),
        ]
        constraints: ClassVar[list[models.BaseConstraint]] = [
            # A key's change is applied at most once, whatever the runners do.
            models.UniqueConstraint(
                fields=["idempotency_key"],
                condition=models.Q(status__in=["success", "rolled_back"]),
                name="mutation_applied_once_per_key",
            ),
            models.UniqueConstraint(fields=["org", "sequence"], name="mutation_chain_position"),
        ]

    def __str__(self) -> str:
        return f"{self.mutation_id} {self.platform} {self.status}"


class RuntimeEvent(AppendOnlyModel):
    """A lifecycle point of a decision on the event-trace plane."""

    class Kind(models.TextChoices):
        DECISION_RECEIVED = "decision_received"
        POLICY_EVALUATED = "policy_evaluated"
        APPROVAL_REQUESTED = "approval_requested"
        APPROVAL_DECIDED = "approval_decided"
        RUN_STARTED = "run_started"
        STEP_SUCCEEDED = "step_succeeded"
        STEP_RETRY_SCHEDULED = "step_retry_scheduled"
        STEP_FAILED = "step_failed"
        ROLLBACK_STARTED = "rollback_started"
        COMPENSATION_APPLIED = "compensation_applied"
        COMPENSATION_SKIPPED = "compensation_skipped"
        COMPENSATION_FAILED = "compensation_failed"
        RUN_FINISHED = "run_finished"

    event_id = models.CharField(primary_key=True, max_length=32, default=_event_id)
    org = models.ForeignKey("controlplane.Organization", on_delete=models.PROTECT)
    workspace = models.ForeignKey("controlplane.Workspace", on_delete=models.PROTECT, null=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True)
    decision = models.ForeignKey(  # indexed by event_decision_time below
        "controlplane.Decision",
        on_delete=models.PROTECT,
        null=True,
        related_name="events",
        db_index=False,
    )
    run = models.ForeignKey(
        "runs.WorkflowRun", on_delete=models.PROTECT, null=True, related_name="events"
    )
    kind = models.CharField(max_length=40, choices=Kind.choices)
    trace_id = models.CharField(max_length=32)
    surface = models.CharField(max_length=40)
    timestamp = models.DateTimeField()
    policy_ids = models.JSONField(default=list)
    before_state_hash = models.CharField(max_length=20, null=True)
    after_state_hash = models.CharField(max_length=20, null=True)
    delta_summary = models.TextField(blank=True)
    payload = models.JSONField(default=dict)

    class Meta:
        ordering: ClassVar[list[str]] = ["timestamp", "event_id"]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["decision", "timestamp"], name="event_decision_time"),
        ]

    def __str__(self) -> str:
        return f"{self.event_id} {self.kind}"


class SandboxCampaign(models.Model):
    """A campaign on a simulated ad platform; its daily budget is what steps change."""

    class Status(models.TextChoices):
        ACTIVE = "active"
        PAUSED = "paused"
        DELETED = "deleted"

    # Indexed by sandbox_campaign_unique below.
    org = models.ForeignKey("controlplane.Organization", on_delete=models.CASCADE, db_index=False)
    platform = models.CharField(max_length=50)
    campaign_id = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    market = models.CharField(max_length=50, default="all")
    daily_budget_micros = models.BigIntegerField()
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ACTIVE)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["org", "platform", "campaign_id"], name="sandbox_campaign_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.platform}:{self.campaign_id}"


class SandboxOperation(models.Model):
    """The first result of each idempotency key a sandbox platform applied."""

    # Indexed by sandbox_operation_once below.
    org = models.ForeignKey("controlplane.Organization", on_delete=models.CASCADE, db_index=False)
    platform = models.CharField(max_length=50)
    idempotency_key = models.CharField(max_length=200)
    request = models.JSONField()
    result = models.JSONField()
    applied_at = models.DateTimeField()
    replays = models.PositiveIntegerField(
        default=0, help_text="Later calls with the same key, answered without applying."
    )

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["org", "platform", "idempotency_key"], name="sandbox_operation_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.platform}:{self.idempotency_key}"


class SandboxFault(models.Model):
    """A planned failure of a sandbox platform, consumed one call at a time."""

    class Kind(models.TextChoices):
        RATE_LIMIT = "rate_limit"
        TRANSIENT = "transient", "5xx"
        TIMEOUT = "timeout"
        FATAL = "fatal", "fatal 4xx"
        AMBIGUOUS = "ambiguous", "applied, answer lost"
        SLOW = "slow"

    org = models.ForeignKey("controlplane.Organization", on_delete=models.CASCADE)
    platform = models.CharField(max_length=50)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    mutation_type = models.CharField(max_length=50, blank=True, help_text="Blank: any change.")
    key_prefix = models.CharField(
        max_length=200, blank=True, help_text="Only calls whose idempotency key starts so."
    )
    remaining = models.PositiveIntegerField(null=True, help_text="Calls left; empty: every call.")
    retry_after_seconds = models.PositiveIntegerField(null=True)
    delay_ms = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.platform} {self.kind}"


class LogHead(models.Model):
    """The newest entry of an org's Mutation Log chain; appending locks this row."""

    org = models.OneToOneField(
        "controlplane.Organization", on_delete=models.CASCADE, primary_key=True
    )
    sequence = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default="")
    verified_sequence = models.BigIntegerField(default=0)
    verified_hash = models.CharField(max_length=64, default="")
    verified_at = models.DateTimeField(null=True)
    broken_at = models.BigIntegerField(null=True, help_text="First entry that failed to verify.")
    broken_reason = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.org_id} at {self.sequence}"
