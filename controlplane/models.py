"""Tenancy, decisions and the policy gate's records."""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.db import models

from mutations.ids import new_id


def _org_id() -> str:
    return new_id("org")


def _workspace_id() -> str:
    return new_id("ws")


def _policy_id() -> str:
    return new_id("pol")


def _service_account_id() -> str:
    return new_id("sa")


class Organization(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=_org_id)
    name = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.name


class Workspace(models.Model):
    id = models.CharField(primary_key=True, max_length=32, default=_workspace_id)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="workspaces")
    name = models.CharField(max_length=200)
    slug = models.SlugField()

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["org", "slug"], name="workspace_slug_per_org"),
        ]

    def __str__(self) -> str:
        return f"{self.org.name} / {self.name}"


class Role(models.TextChoices):
    VIEWER = "viewer"
    OPERATOR = "operator"
    APPROVER = "approver"
    ADMIN = "admin"
    AGENT = "agent", "agent (API token)"


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["user", "org"], name="one_membership_per_org"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.org} as {self.role}"


class ServiceAccount(models.Model):
    """An agent that submits decisions; it acts as ``agent:<name>``."""

    id = models.CharField(primary_key=True, max_length=32, default=_service_account_id)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="service_accounts")
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE)
    name = models.SlugField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(fields=["org", "name"], name="service_account_name_per_org"),
        ]

    def __str__(self) -> str:
        return self.actor

    @property
    def actor(self) -> str:
        return f"agent:{self.name}"


class PolicyVersion(models.Model):
    """One text of a workspace's policy; at most one is active."""

    id = models.CharField(primary_key=True, max_length=32, default=_policy_id)
    org = models.ForeignKey(Organization, on_delete=models.CASCADE)
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="policies")
    version = models.CharField(max_length=100)
    text = models.TextField()
    sha256 = models.CharField(max_length=64)
    is_active = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True)
    activated_by = models.CharField(max_length=150, blank=True)

    class Meta:
        constraints: ClassVar[list[models.BaseConstraint]] = [
            models.UniqueConstraint(
                fields=["workspace", "version"], name="policy_version_per_workspace"
            ),
            models.UniqueConstraint(
                fields=["workspace"],
                condition=models.Q(is_active=True),
                name="one_active_policy_per_workspace",
            ),
        ]

    def __str__(self) -> str:
        return self.version


class DecisionQuerySet(models.QuerySet["Decision"]):
    def for_org(self, org: Organization) -> DecisionQuerySet:
        return self.filter(org=org)


class Decision(models.Model):
    """What an agent proposed. Immutable once received."""

    id = models.CharField(primary_key=True, max_length=32)
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="decisions")
    workspace = models.ForeignKey(Workspace, on_delete=models.PROTECT)
    type = models.CharField(max_length=100)
    priority = models.CharField(max_length=20)
    confidence = models.FloatField()
    summary = models.TextField()
    reasoning = models.TextField()
    auto_executable = models.BooleanField()
    action = models.JSONField()
    computed_at = models.DateTimeField()
    policy_version = models.CharField(max_length=100)
    document = models.JSONField(help_text="The decision as received, in its canonical form.")
    payload_hash = models.CharField(max_length=64)
    requested_by = models.CharField(max_length=150)
    trace_id = models.CharField(max_length=32)
    received_at = models.DateTimeField()

    objects = DecisionQuerySet.as_manager()

    class Meta:
        ordering: ClassVar[list[str]] = ["-received_at", "-id"]
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["org", "-received_at", "-id"], name="decision_org_recent"),
        ]

    def __str__(self) -> str:
        return self.id

    def as_document(self) -> dict[str, Any]:
        return dict(self.document)


class PolicyEvaluation(models.Model):
    class Outcome(models.TextChoices):
        ALLOW = "allow"
        DENY = "deny"
        REQUIRE_HUMAN = "require_human"

    decision = models.OneToOneField(Decision, on_delete=models.PROTECT, related_name="evaluation")
    org = models.ForeignKey(Organization, on_delete=models.PROTECT)
    policy = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, null=True)
    policy_version = models.CharField(max_length=100)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    matched_rule_ids = models.JSONField(default=list)
    deciding_rule_ids = models.JSONField(
        default=list, help_text="The matched rules whose decision is the outcome."
    )
    inputs = models.JSONField(default=dict)
    evaluated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.decision_id} {self.outcome}"


class ApiToken(models.Model):
    """A bearer token of a service account. Only its sha256 is stored; revoked ones fail."""

    PREFIX = "bst"

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_tokens")
    service_account = models.ForeignKey(
        ServiceAccount, on_delete=models.CASCADE, related_name="tokens"
    )
    lookup = models.CharField(max_length=16, unique=True, help_text="Shown in lists; not secret.")
    secret_hash = models.CharField(max_length=64)
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True)
    revoked_at = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"{self.PREFIX}_{self.lookup}_…"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class PolicyActivation(models.Model):
    """One activation of a policy version: who, when, and the sha256 of the text."""

    policy = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="activations")
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE)
    activated_by = models.CharField(max_length=150)
    activated_at = models.DateTimeField()
    sha256 = models.CharField(max_length=64)

    class Meta:
        ordering: ClassVar[list[str]] = ["-activated_at"]

    def __str__(self) -> str:
        return f"{self.policy} by {self.activated_by}"


def _drill_id() -> str:
    return new_id("drl")


class Fault(models.TextChoices):
    """The planned failure of a drill."""

    RATE_LIMIT = "rate_limit", "rate limit until retries run out"
    FATAL = "fatal", "fatal 4xx"
    TIMEOUT = "timeout", "timeouts until retries run out"
    TRANSIENT_BURST = "transient_burst", "5xx burst that recovers"
    AMBIGUOUS = "ambiguous", "ambiguous success (applied, answer lost)"
    COMPENSATION_FAILS = "compensation_fails", "the step fails and a compensation fails too"


class DrillPlan(models.Model):
    """A drill to repeat on a schedule."""

    org = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="drill_plans")
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE)
    workflow_id = models.CharField(max_length=100)
    step_id = models.CharField(max_length=100)
    fault = models.CharField(max_length=30, choices=Fault.choices)
    every_seconds = models.PositiveIntegerField(help_text="How often it repeats.")
    next_run_at = models.DateTimeField()
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)
    enabled = models.BooleanField(default=True)

    class Meta:
        indexes: ClassVar[list[models.Index]] = [
            models.Index(fields=["next_run_at"], condition=models.Q(enabled=True), name="plan_due"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id}:{self.step_id} {self.fault} every {self.every_seconds}s"


class Drill(models.Model):
    """One rehearsed failure: a real run on sandbox platforms, and the checks of its evidence."""

    id = models.CharField(primary_key=True, max_length=32, default=_drill_id)
    org = models.ForeignKey(Organization, on_delete=models.PROTECT, related_name="drills")
    plan = models.ForeignKey(DrillPlan, on_delete=models.SET_NULL, null=True, related_name="drills")
    workflow_id = models.CharField(max_length=100)
    workflow_version = models.PositiveIntegerField()
    step_id = models.CharField(max_length=100)
    fault = models.CharField(max_length=30, choices=Fault.choices)
    expected_status = models.CharField(max_length=30)
    started_by = models.CharField(max_length=150)
    started_at = models.DateTimeField()
    decision = models.OneToOneField(Decision, on_delete=models.PROTECT, related_name="drill")
    run = models.OneToOneField(
        "runs.WorkflowRun", on_delete=models.PROTECT, related_name="drill", null=True
    )
    checks = models.JSONField(default=list)
    passed = models.BooleanField(null=True, help_text="Empty until the run has finished.")
    verified_at = models.DateTimeField(null=True)

    class Meta:
        ordering: ClassVar[list[str]] = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.id} {self.workflow_id}:{self.step_id} {self.fault}"

    @property
    def verifying(self) -> bool:
        """Return whether the run has come to rest but its checks are not stored yet: the
        runners verify it on their next pass."""
        return self.verified_at is None and self.run is not None and self.run.is_terminal


def decision_status(decision: Decision) -> str:
    """Return what a person wants to know first: the run's state, or the gate's verdict."""
    run_status: str | None = getattr(decision, "run_status", None)
    if run_status:
        return run_status
    evaluation: PolicyEvaluation | None = getattr(decision, "evaluation", None)
    if evaluation is not None and evaluation.outcome == PolicyEvaluation.Outcome.DENY:
        return "denied"
    return "received"


# Webhook endpoints and their deliveries live with the notifications (controlplane.notify).
from controlplane.notify.models import Delivery as Delivery  # noqa: E402
from controlplane.notify.models import WebhookEndpoint as WebhookEndpoint  # noqa: E402
