"""The OpenAPI description of the API: response shapes and the bearer-token scheme.

The views build plain dicts (the seed's shapes); these serializers only describe them.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers

from controlplane.intake.serializers import DecisionInSerializer, StrictCharField
from mutations.serializers import RuntimeEventSerializer
from runs.serializers import WorkflowRunSerializer


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "controlplane.access.tokens.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "bst_<id>_<secret>"}


class Error(serializers.Serializer[Any]):
    # "fields" cannot be an attribute name on a serializer class, hence inline_serializer.
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


class PolicyEvaluationOut(serializers.Serializer[Any]):
    policy_version = serializers.CharField()
    outcome = serializers.ChoiceField(choices=["allow", "require_human", "deny"])
    matched_rule_ids = serializers.ListField(child=serializers.CharField())
    deciding_rule_ids = serializers.ListField(child=serializers.CharField())


class DecisionOut(DecisionInSerializer):
    id = StrictCharField()
    requested_by = serializers.CharField()
    trace_id = serializers.CharField()
    received_at = serializers.CharField()
    payload_hash = serializers.CharField()
    policy_evaluation = PolicyEvaluationOut(allow_null=True)
    run = WorkflowRunSerializer(allow_null=True)


class DecisionListItem(DecisionInSerializer):
    id = StrictCharField()
    status = serializers.CharField()
    run_id = serializers.CharField(allow_null=True)
    received_at = serializers.CharField()


class DecisionList(serializers.Serializer[Any]):
    entries = DecisionListItem(many=True)
    next = serializers.URLField(allow_null=True, help_text="The next page, or null.")


class DecisionQuery(serializers.Serializer[Any]):
    decision_id = serializers.CharField()


class MutationEntry(serializers.Serializer[Any]):
    mutation_id = serializers.CharField()
    decision_id = serializers.CharField()
    platform = serializers.CharField()
    mutation_type = serializers.CharField()
    payload = serializers.DictField()
    result = serializers.DictField(allow_null=True)
    status = serializers.ChoiceField(choices=["success", "failed", "rolled_back"])
    actor_type = serializers.CharField()
    created_at = serializers.CharField()
    error_message = serializers.CharField(allow_null=True)


class MutationQueryResult(serializers.Serializer[Any]):
    query = DecisionQuery()
    entries = MutationEntry(many=True)
    count = serializers.IntegerField()


class EventQueryResult(serializers.Serializer[Any]):
    query = DecisionQuery()
    entries = RuntimeEventSerializer(many=True)
    count = serializers.IntegerField()


class Evidence(serializers.Serializer[Any]):
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
    compensations = serializers.ListField(child=serializers.DictField())
    remaining = serializers.ListField(child=serializers.DictField())
    before_state_hash = serializers.CharField(allow_null=True)
    after_state_hash = serializers.CharField(allow_null=True)
    rollback_started_at = serializers.CharField(allow_null=True)
    rollback_finished_at = serializers.CharField(allow_null=True)


class ApprovalResult(serializers.Serializer[Any]):
    approval_id = serializers.CharField()
    status = serializers.CharField()
    decided_by = serializers.CharField()
    comment = serializers.CharField(allow_blank=True)
    run = WorkflowRunSerializer()


class DrillOut(serializers.Serializer[Any]):
    id = serializers.CharField()
    workflow_id = serializers.CharField()
    workflow_version = serializers.IntegerField()
    step_id = serializers.CharField()
    fault = serializers.CharField()
    expected_status = serializers.CharField()
    started_by = serializers.CharField()
    started_at = serializers.CharField()
    decision_id = serializers.CharField()
    run_id = serializers.CharField(allow_null=True)
    run_status = serializers.CharField(allow_null=True)
    passed = serializers.BooleanField(allow_null=True)
    checks = serializers.ListField(child=serializers.DictField())


ERRORS = {
    code: OpenApiResponse(Error, description=text)
    for code, text in (
        (400, "Invalid input; `fields` names each field and what is wrong."),
        (401, "Missing, unknown or revoked credentials."),
        (403, "Your role may not do this."),
        (404, "No such object in your organization."),
        (405, "Method not allowed."),
        (406, "Only application/json is served."),
        (409, "Conflicts with the object's state."),
        (413, "Request body too large."),
        (415, "Send application/json."),
        (429, "Too many requests from this token; retry later."),
    )
}
DECISION_ID = OpenApiParameter(
    "decision_id", str, OpenApiParameter.QUERY, required=True, description="A dec_ id."
)


def document(
    *,
    responses: dict[int, Any],
    request: Any = None,
    parameters: list[Any] | None = None,
    methods: list[str] | None = None,
    operation_id: str | None = None,
) -> Any:
    """Describe one view: its request body, its parameters, its answers and its errors."""
    return extend_schema(
        operation_id=operation_id,
        methods=methods,
        request=request,
        parameters=parameters or [],
        responses={**ERRORS, **responses},
    )


class DecisionDetail(DecisionOut):
    mutations = MutationEntry(many=True)
    events = RuntimeEventSerializer(many=True)


class HeldRun(serializers.Serializer[Any]):
    approval_id = serializers.CharField()
    run_id = serializers.CharField()
    decision_id = serializers.CharField()
    summary = serializers.CharField()
    reasoning = serializers.CharField()
    requested_by = serializers.CharField()
    held_by = serializers.ListField(child=serializers.CharField())
    at_stake = serializers.CharField()
    plan = serializers.ListField(child=serializers.DictField())
    requested_at = serializers.CharField()
    expires_at = serializers.CharField()


class HeldList(serializers.Serializer[Any]):
    entries = HeldRun(many=True)


class DrillList(serializers.Serializer[Any]):
    entries = DrillOut(many=True)


class PolicyOut(serializers.Serializer[Any]):
    id = serializers.CharField()
    version = serializers.CharField()
    workspace_id = serializers.CharField()
    is_active = serializers.BooleanField()
    sha256 = serializers.CharField()
    activated_at = serializers.CharField(allow_null=True)
    activated_by = serializers.CharField(allow_null=True)
    text = serializers.CharField()


class PolicyList(serializers.Serializer[Any]):
    entries = PolicyOut(many=True)


class PolicyCheck(serializers.Serializer[Any]):
    valid = serializers.BooleanField()
    version = serializers.CharField()
    default = serializers.CharField()
    rules = serializers.ListField(child=serializers.CharField())
    active = PolicyOut(allow_null=True)


DECISION_FILTERS = [
    OpenApiParameter(name, str, OpenApiParameter.QUERY, description=text)
    for name, text in (
        ("q", "Text in the summary, or a dec_ id."),
        ("status", "A run status, or denied."),
        ("type", "A decision type."),
        ("platform", "A platform the decision touches."),
        ("received_from", "YYYY-MM-DD"),
        ("received_to", "YYYY-MM-DD"),
        ("drills", "only or exclude."),
        ("after", "The cursor of the next page, from `next`."),
    )
]
