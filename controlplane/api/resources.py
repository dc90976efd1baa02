"""More of the API: held actions, drills and policy versions."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.access.tenancy import (
    actor_of,
    can_administer,
    can_operate,
    current_membership,
    current_org,
    submission_workspace,
)
from controlplane.api import schema as schema
from controlplane.api.schema import document
from controlplane.drills.start import DrillRefused, start_drill
from controlplane.drills.verify import verify_drill
from controlplane.models import Drill, Fault, PolicyVersion
from controlplane.pages import selectors
from controlplane.pages.selectors import HeldRun
from controlplane.policy.rules import PolicyInvalid, parse_policy
from controlplane.policy.versions import activate_policy
from runs.models import RunStatus, WorkflowRun

LIST_LIMIT = 100
UTC = "%Y-%m-%dT%H:%M:%SZ"


# ---- held actions ----------------------------------------------------------------------------


def held_body(item: HeldRun) -> dict[str, Any]:
    run = item.run
    return {
        "approval_id": run.approval.id,
        "run_id": run.run_id,
        "decision_id": run.decision_id,
        "summary": item.decision.summary,
        "reasoning": item.decision.reasoning,
        "requested_by": run.requested_by,
        "held_by": item.rules,
        "at_stake": item.at_stake,
        "plan": item.plan,
        "requested_at": run.approval.requested_at.strftime(UTC),
        "expires_at": run.approval.expires_at.strftime(UTC),
    }


@document(responses={200: schema.HeldList})
@api_view(["GET"])
def approvals(request: Request) -> Response:
    """Runs waiting for a person, oldest first."""
    held = (
        WorkflowRun.objects.filter(org=current_org(request), status=RunStatus.AWAITING_APPROVAL)
        .select_related("decision", "decision__evaluation", "approval")
        .order_by("created_at")[:LIST_LIMIT]
    )
    return Response({"entries": [held_body(HeldRun(run)) for run in held]})


# ---- drills -----------------------------------------------------------------------------------


class DrillInSerializer(serializers.Serializer[dict[str, Any]]):
    workflow_id = serializers.CharField(max_length=100)
    step_id = serializers.CharField(max_length=100)
    fault = serializers.ChoiceField(choices=Fault.choices)


def drill_body(drill: Drill) -> dict[str, Any]:
    return {
        "id": drill.id,
        "workflow_id": drill.workflow_id,
        "workflow_version": drill.workflow_version,
        "step_id": drill.step_id,
        "fault": drill.fault,
        "expected_status": drill.expected_status,
        "started_by": drill.started_by,
        "started_at": drill.started_at.strftime(UTC),
        "decision_id": drill.decision_id,
        "run_id": drill.run_id,
        "run_status": drill.run.status if drill.run else None,
        "passed": drill.passed,
        "checks": drill.checks,
    }


@document(methods=["GET"], operation_id="drills_list", responses={200: schema.DrillList})
@document(methods=["POST"], request=DrillInSerializer, responses={201: schema.DrillOut})
@api_view(["GET", "POST"])
def drills(request: Request) -> Response:
    """POST: start a drill, a real run on sandbox platforms with a planned fault. GET: the
    newest drills."""
    membership = current_membership(request)
    if request.method == "GET":
        recent = Drill.objects.filter(org=membership.org).select_related("run")[:LIST_LIMIT]
        return Response({"entries": [drill_body(verify_drill(d)) for d in recent]})
    if not can_operate(membership):
        raise PermissionDenied("Only operators and admins may start drills.")
    body = DrillInSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    try:
        drill = start_drill(
            workspace=submission_workspace(request, membership),
            started_by=actor_of(request.user),
            user_id=request.user.pk,
            **body.validated_data,
        )
    except DrillRefused as refused:
        raise ValidationError({"non_field_errors": [str(refused)]}) from None
    return Response(drill_body(drill), status=status.HTTP_201_CREATED)


@document(responses={200: schema.DrillOut})
@api_view(["GET"])
def drill_detail(request: Request, drill_id: str) -> Response:
    drill = selectors.get_drill(current_org(request), drill_id)
    return Response(drill_body(verify_drill(drill)))


# ---- policies ---------------------------------------------------------------------------------


class PolicyInSerializer(serializers.Serializer[dict[str, Any]]):
    text = serializers.CharField(max_length=256 * 1024, trim_whitespace=False)
    activate = serializers.BooleanField(default=False)


def policy_body(version: PolicyVersion) -> dict[str, Any]:
    return {
        "id": version.id,
        "version": version.version,
        "workspace_id": version.workspace_id,
        "is_active": version.is_active,
        "sha256": version.sha256,
        "activated_at": version.activated_at.strftime(UTC) if version.activated_at else None,
        "activated_by": version.activated_by or None,
        "text": version.text,
    }


@document(methods=["GET"], operation_id="policies_list", responses={200: schema.PolicyList})
@document(methods=["POST"], request=PolicyInSerializer, responses={200: schema.PolicyCheck})
@api_view(["GET", "POST"])
def policies(request: Request) -> Response:
    """GET: the policy versions. POST: validate a text, and with ``activate`` make it the
    active version (admins). Errors name the line and the field."""
    membership = current_membership(request)
    if request.method == "GET":
        versions = PolicyVersion.objects.filter(org=membership.org).order_by("-activated_at")
        return Response({"entries": [policy_body(v) for v in versions[:LIST_LIMIT]]})
    if not can_administer(membership):
        raise PermissionDenied("Only admins may validate or activate policies.")
    body = PolicyInSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    text = body.validated_data["text"]
    try:
        policy = parse_policy(text)
        activated = None
        if body.validated_data["activate"]:
            activated = activate_policy(
                workspace=submission_workspace(request, membership),
                text=text,
                activated_by=actor_of(request.user),
            )
    except PolicyInvalid as invalid:
        raise ValidationError(
            {
                p.field: [f"line {p.line}: {p.message}" if p.line else p.message]
                for p in invalid.problems
            }
        ) from None
    return Response(
        {
            "valid": True,
            "version": policy.version,
            "default": policy.default,
            "rules": [rule.id for rule in policy.rules],
            "active": policy_body(activated) if activated else None,
        }
    )
