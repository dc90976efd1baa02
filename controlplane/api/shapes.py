"""The API's response shapes, each defined once.

These serializers render every response body and, through drf-spectacular, describe it in
the OpenAPI schema, so the documentation cannot drift from what the views return. They
only read: every value comes from a model, a selector or a domain record.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.utils.serializer_helpers import ReturnDict

from controlplane.intake.approvals import HeldRun as HeldRunItem
from controlplane.intake.serializers import PRIORITIES
from controlplane.models import Decision, Drill, PolicyEvaluation, PolicyVersion, decision_status
from mutations.models import Mutation
from mutations.serializers import RuntimeEventSerializer
from mutations.timestamps import UTC_FORMAT
from runs.serializers import WorkflowRunSerializer


class Moment(serializers.DateTimeField):
    """A moment as the seed writes it: 2026-04-22T18:12:11Z, in UTC to the second."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format=UTC_FORMAT, default_timezone=UTC, **kwargs)


class AsSentNumber(serializers.FloatField):
    """A number echoed as the agent sent it: 1 stays 1 rather than becoming 1.0."""

    def to_representation(self, value: Any) -> Any:
        return value


# ---- errors -----------------------------------------------------------------------------------


class Error(serializers.Serializer[dict[str, Any]]):
    """Every refusal: a code, a message, and what is wrong with each field, by its path."""

    # "fields" cannot be an attribute of a serializer class, hence inline_serializer.
    error = inline_serializer(
        name="ErrorDetail",
        fields={
            "code": serializers.CharField(),
            "message": serializers.CharField(),
            "fields": serializers.DictField(
                child=serializers.ListField(child=serializers.CharField())
            ),
        },
    )


# ---- decisions --------------------------------------------------------------------------------


class DecisionDocument(serializers.Serializer[Decision]):
    """The decision as the agent sent it (seed 000's fields), values exactly as stored."""

    id = serializers.CharField(source="document.id")
    type = serializers.CharField(source="document.type")
    priority = serializers.ChoiceField(choices=PRIORITIES, source="document.priority")
    confidence = AsSentNumber(source="document.confidence")
    summary = serializers.CharField(source="document.summary")
    reasoning = serializers.CharField(source="document.reasoning", allow_blank=True)
    auto_executable = serializers.BooleanField(source="document.auto_executable")
    action = serializers.DictField(source="document.action")
    # As sent: the agent's own spelling of the moment, which the payload hash covers.
    computed_at = serializers.DateTimeField(source="document.computed_at")
    policy_version = serializers.CharField(source="document.policy_version")


class PolicyEvaluationOut(serializers.Serializer[PolicyEvaluation]):
    policy_version = serializers.CharField()
    outcome = serializers.ChoiceField(choices=PolicyEvaluation.Outcome.values)
    matched_rule_ids = serializers.ListField(child=serializers.CharField())
    deciding_rule_ids = serializers.ListField(child=serializers.CharField())


class DecisionOut(DecisionDocument):
    """A received decision: the document, who sent it, the gate's verdict and its newest run."""

    requested_by = serializers.CharField()
    trace_id = serializers.CharField()
    received_at = Moment()
    payload_hash = serializers.CharField()
    policy_evaluation = PolicyEvaluationOut(source="evaluation", allow_null=True)
    run = serializers.SerializerMethodField()

    @extend_schema_field(WorkflowRunSerializer(allow_null=True))
    def get_run(self, decision: Decision) -> ReturnDict[str, Any] | None:
        run = decision.runs.order_by("-created_at").first()
        return WorkflowRunSerializer(run).data if run else None


class MutationEntry(serializers.Serializer[Mutation]):
    """One Mutation Log entry, in seed 000's shape."""

    mutation_id = serializers.CharField()
    decision_id = serializers.CharField()
    platform = serializers.CharField()
    mutation_type = serializers.CharField()
    payload = serializers.DictField()
    result = serializers.DictField(allow_null=True)
    status = serializers.ChoiceField(choices=Mutation.Status.values)
    actor_type = serializers.CharField()
    created_at = Moment()
    error_message = serializers.CharField(allow_null=True)


class DecisionDetail(DecisionOut):
    """A decision with its timeline: every run (one per attempt, oldest first), its
    Mutation Log entries and its runtime events, in the order they happened."""

    runs = serializers.SerializerMethodField()
    mutations = MutationEntry(many=True)
    events = RuntimeEventSerializer(many=True)

    @extend_schema_field(WorkflowRunSerializer(many=True))
    def get_runs(self, decision: Decision) -> Any:
        return WorkflowRunSerializer(decision.runs.order_by("created_at"), many=True).data


class DecisionListItem(DecisionDocument):
    """A decision in the list: the document, where it stands, and its newest run."""

    status = serializers.SerializerMethodField()
    run_id = serializers.CharField(allow_null=True, help_text="The newest run, if any.")
    received_at = Moment()

    def get_status(self, decision: Decision) -> str:
        return decision_status(decision)


class DecisionList(serializers.Serializer[dict[str, Any]]):
    entries = DecisionListItem(many=True)
    next = serializers.URLField(allow_null=True, help_text="The next page, or null.")


class DecisionQuery(serializers.Serializer[dict[str, Any]]):
    decision_id = serializers.CharField()


class MutationQueryResult(serializers.Serializer[dict[str, Any]]):
    """The Mutation Log's query shape (seed 000): the query, its entries and their count."""

    query = DecisionQuery()
    entries = MutationEntry(many=True)
    count = serializers.IntegerField()


class EventQueryResult(serializers.Serializer[dict[str, Any]]):
    query = DecisionQuery()
    entries = RuntimeEventSerializer(many=True)
    count = serializers.IntegerField()


def decision_query(decision_id: str, entries: list[Any]) -> dict[str, Any]:
    """Return what a query result renders: the query, its rows and how many there are."""
    return {"query": {"decision_id": decision_id}, "entries": entries, "count": len(entries)}


# ---- runs -------------------------------------------------------------------------------------


class EvidenceCompensation(serializers.Serializer[dict[str, Any]]):
    order = serializers.IntegerField()
    compensation_id = serializers.CharField()
    step_id = serializers.CharField()
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    compensates_mutation_id = serializers.CharField(allow_null=True)
    mutation_id = serializers.CharField(allow_null=True)
    idempotency_key = serializers.CharField()
    reason = serializers.CharField(allow_null=True)


class EvidenceRemaining(serializers.Serializer[dict[str, Any]]):
    step_id = serializers.CharField()
    compensation_id = serializers.CharField()
    compensates_mutation_id = serializers.CharField(allow_null=True)
    platform = serializers.CharField(allow_null=True)
    applied_change = serializers.DictField(allow_null=True)
    target = serializers.DictField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)


class Evidence(serializers.Serializer[dict[str, Any]]):
    """The rollback evidence record of a run (seed 001), rendered from runs.rollback's."""

    run_id = serializers.CharField()
    decision_id = serializers.CharField()
    workflow_id = serializers.CharField()
    status = serializers.CharField()
    failed_step_id = serializers.CharField(allow_null=True)
    matched_policy_ids = serializers.ListField(child=serializers.CharField())
    requested_by = serializers.CharField()
    rollback_triggered = serializers.BooleanField()
    rollback_reason = serializers.CharField(allow_null=True)
    rollback_requested_by = serializers.CharField(allow_null=True)
    rollback_mode = serializers.CharField()
    compensations_dispatched = serializers.IntegerField()
    compensations_skipped = serializers.IntegerField()
    compensations = EvidenceCompensation(many=True)
    remaining = EvidenceRemaining(many=True)
    before_state_hash = serializers.CharField(allow_null=True)
    after_state_hash = serializers.CharField(allow_null=True)
    rollback_started_at = Moment(allow_null=True)
    rollback_finished_at = Moment(allow_null=True)


class ApprovalResult(serializers.Serializer[dict[str, Any]]):
    """A vote on a held run: the approval's status (pending while more approvers are
    needed), the count so far and how many are still needed, and the run."""

    approval_id = serializers.CharField()
    status = serializers.CharField()
    decided_by = serializers.CharField(help_text="Who cast this vote.")
    comment = serializers.CharField(allow_blank=True)
    approvals = serializers.IntegerField(help_text="Distinct approvers so far.")
    approvals_required = serializers.IntegerField(
        help_text="Distinct approvers the policy asks for."
    )
    remaining = serializers.IntegerField(help_text="Approvals still needed; 0 once decided.")
    approved_by = serializers.ListField(child=serializers.CharField())
    run = WorkflowRunSerializer()


class RedriveResult(serializers.Serializer[dict[str, Any]]):
    """A redrive: the new attempt, the gate's verdict on it and its run (null if denied)."""

    decision_id = serializers.CharField()
    attempt = serializers.IntegerField()
    outcome = serializers.ChoiceField(choices=PolicyEvaluation.Outcome.values)
    reason = serializers.CharField()
    requested_by = serializers.CharField()
    run = WorkflowRunSerializer(allow_null=True)


class HeldRun(serializers.Serializer[HeldRunItem]):
    """A run waiting for a person: what it would do, what is at stake, and until when."""

    approval_id = serializers.CharField(source="run.approval.id")
    run_id = serializers.CharField(source="run.run_id")
    decision_id = serializers.CharField(source="run.decision_id")
    summary = serializers.CharField(source="decision.summary")
    reasoning = serializers.CharField(source="decision.reasoning")
    requested_by = serializers.CharField(source="run.requested_by")
    held_by = serializers.ListField(child=serializers.CharField(), source="rules")
    at_stake = serializers.CharField()
    plan = serializers.ListField(child=serializers.DictField())
    requested_at = Moment(source="run.approval.requested_at")
    expires_at = Moment(source="run.approval.expires_at")
    approvals = serializers.IntegerField(source="approvals_given")
    approvals_required = serializers.IntegerField(source="required")
    remaining = serializers.IntegerField(source="approvals_missing")
    approved_by = serializers.ListField(child=serializers.CharField())
    approver_roles = serializers.ListField(
        child=serializers.CharField(), help_text="Who may decide; empty: approvers and admins."
    )


class HeldList(serializers.Serializer[dict[str, Any]]):
    entries = HeldRun(many=True)


# ---- drills and policies ----------------------------------------------------------------------


class DrillOut(serializers.Serializer[Drill]):
    id = serializers.CharField()
    workflow_id = serializers.CharField()
    workflow_version = serializers.IntegerField()
    step_id = serializers.CharField()
    fault = serializers.CharField()
    expected_status = serializers.CharField()
    started_by = serializers.CharField()
    started_at = Moment()
    decision_id = serializers.CharField()
    run_id = serializers.CharField(allow_null=True)
    run_status = serializers.CharField(source="run.status", allow_null=True)
    passed = serializers.BooleanField(allow_null=True)
    verifying = serializers.BooleanField(
        help_text="The run has come to rest and the runners have yet to check its evidence."
    )
    checks = serializers.ListField(child=serializers.DictField())


class DrillList(serializers.Serializer[dict[str, Any]]):
    entries = DrillOut(many=True)


class PolicyOut(serializers.Serializer[PolicyVersion]):
    id = serializers.CharField()
    version = serializers.CharField()
    workspace_id = serializers.CharField()
    is_active = serializers.BooleanField()
    sha256 = serializers.CharField()
    activated_at = Moment(allow_null=True)
    activated_by = serializers.SerializerMethodField()
    text = serializers.CharField()

    def get_activated_by(self, version: PolicyVersion) -> str | None:
        return version.activated_by or None


class PolicyList(serializers.Serializer[dict[str, Any]]):
    entries = PolicyOut(many=True)


class PolicyCheck(serializers.Serializer[dict[str, Any]]):
    """A policy text that parsed: its version, default and rules, and the version it became
    when activated (else null)."""

    valid = serializers.BooleanField()
    version = serializers.CharField()
    default = serializers.CharField()
    rules = serializers.ListField(child=serializers.CharField())
    active = PolicyOut(allow_null=True)
