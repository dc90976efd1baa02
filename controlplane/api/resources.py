"""More of the API: held actions, drills and policy versions."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.access.tenancy import (
    ADMINS,
    OPERATORS,
    actor_of,
    current_membership,
    current_org,
    require,
    submission_workspace,
)
from controlplane.api import shapes
from controlplane.api.schema import document
from controlplane.drills.start import start_drill
from controlplane.intake.approvals import held_runs
from controlplane.models import Drill, Fault, PolicyVersion
from controlplane.pages import queries
from controlplane.policy.rules import parse_policy
from controlplane.policy.versions import activate_policy

LIST_LIMIT = 100


# ---- held actions ----------------------------------------------------------------------------


@document(responses={200: shapes.HeldList})
@api_view(["GET"])
def approvals(request: Request) -> Response:
    """Runs waiting for a person, oldest first."""
    held = held_runs(current_org(request), limit=LIST_LIMIT)
    return Response(shapes.HeldList({"entries": held}).data)


# ---- drills -----------------------------------------------------------------------------------


class DrillInSerializer(serializers.Serializer[dict[str, Any]]):
    workflow_id = serializers.CharField(max_length=100)
    step_id = serializers.CharField(max_length=100)
    fault = serializers.ChoiceField(choices=Fault.choices)


@document(methods=["GET"], operation_id="drills_list", responses={200: shapes.DrillList})
@document(methods=["POST"], request=DrillInSerializer, responses={201: shapes.DrillOut})
@api_view(["GET", "POST"])
def drills(request: Request) -> Response:
    """POST: start a drill, a real run on sandbox platforms with a planned fault. GET: the
    newest drills."""
    membership = current_membership(request)
    if request.method == "GET":
        recent = Drill.objects.filter(org=membership.org).select_related("run")[:LIST_LIMIT]
        return Response(shapes.DrillList({"entries": recent}).data)
    require(membership, OPERATORS, to="start drills")
    body = DrillInSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    drill = start_drill(
        workspace=submission_workspace(request, membership),
        started_by=actor_of(request.user),
        user_id=request.user.pk,
        **body.validated_data,
    )
    return Response(shapes.DrillOut(drill).data, status=status.HTTP_201_CREATED)


@document(responses={200: shapes.DrillOut})
@api_view(["GET"])
def drill_detail(request: Request, drill_id: str) -> Response:
    drill = queries.get_drill(current_org(request), drill_id)
    return Response(shapes.DrillOut(drill).data)


# ---- policies ---------------------------------------------------------------------------------


class PolicyInSerializer(serializers.Serializer[dict[str, Any]]):
    text = serializers.CharField(max_length=256 * 1024, trim_whitespace=False)
    activate = serializers.BooleanField(default=False)


@document(methods=["GET"], operation_id="policies_list", responses={200: shapes.PolicyList})
@document(methods=["POST"], request=PolicyInSerializer, responses={200: shapes.PolicyCheck})
@api_view(["GET", "POST"])
def policies(request: Request) -> Response:
    """GET: the policy versions. POST: validate a text, and with ``activate`` make it the
    active version (admins). Errors name the line and the field."""
    membership = current_membership(request)
    if request.method == "GET":
        versions = PolicyVersion.objects.filter(org=membership.org).order_by("-activated_at")
        return Response(shapes.PolicyList({"entries": versions[:LIST_LIMIT]}).data)
    require(membership, ADMINS, to="validate or activate policies")
    body = PolicyInSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    text = body.validated_data["text"]
    policy = parse_policy(text)
    activated = None
    if body.validated_data["activate"]:
        activated = activate_policy(
            workspace=submission_workspace(request, membership),
            text=text,
            activated_by=actor_of(request.user),
        )
    check = {
        "valid": True,
        "version": policy.version,
        "default": policy.default,
        "rules": [rule.id for rule in policy.rules],
        "active": activated,
    }
    return Response(shapes.PolicyCheck(check).data)
