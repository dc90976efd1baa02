"""GET /api/v1/actions/: the decision types one may propose, as the MCP tool list_actions
tells an agent (controlplane.agents.tools), for clients that speak REST."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.access.tenancy import current_membership, submission_workspace
from controlplane.agents.tools import _describe
from controlplane.api.schema import document
from controlplane.models import PolicyEvaluation
from mutations.connectors import known_platforms
from runs.workflows.registry import Reversibility, all_workflows


class PolicyPreviewOut(serializers.Serializer[dict[str, Any]]):
    """What the active policy does with a typical decision of the type."""

    assumes = serializers.DictField(help_text="The typical decision the preview evaluated.")
    policy_version = serializers.CharField(
        allow_null=True, help_text="The active policy's version, or null when none is active."
    )
    outcome = serializers.ChoiceField(choices=PolicyEvaluation.Outcome.values)
    deciding_rule_ids = serializers.ListField(child=serializers.CharField())


class ActionOut(serializers.Serializer[dict[str, Any]]):
    """A decision type: the workflow that serves it, its steps, and the action it takes."""

    decision_type = serializers.CharField()
    workflow_id = serializers.CharField()
    workflow_version = serializers.IntegerField()
    description = serializers.CharField(allow_blank=True)
    steps = serializers.ListField(child=serializers.CharField())
    reversibility = serializers.ChoiceField(
        choices=[r.value for r in Reversibility], help_text="The least reversible step's."
    )
    action_schema = serializers.DictField(
        help_text="The JSON Schema of the decision's `action` object."
    )
    policy_preview = PolicyPreviewOut(
        allow_null=True, help_text="Null when the workflow declares no typical action."
    )


class ActionList(serializers.Serializer[dict[str, Any]]):
    actions = ActionOut(many=True)
    platforms = serializers.ListField(child=serializers.CharField())


@document(responses={200: ActionList})
@api_view(["GET"])
def actions(request: Request) -> Response:
    """The decision types you may propose, with their action schemas and what the active
    policy of your workspace does with typical values."""
    workspace = submission_workspace(request, current_membership(request))
    # The body of agents.tools.list_actions, for any workspace (an agent's or a person's).
    catalogue = {
        "actions": [_describe(workspace, workflow) for workflow in all_workflows()],
        "platforms": known_platforms(),
    }
    return Response(ActionList(catalogue).data)
