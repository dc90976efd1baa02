"""The HTTP API under /api/v1/: thin views over services and selectors."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane import api_schema as schema
from controlplane import selectors
from controlplane.api_errors import error_body
from controlplane.api_schema import document
from controlplane.approvals import decide_held_run
from controlplane.drills import DrillRefused, start_drill, verify_drill
from controlplane.models import Decision, Drill, Fault
from controlplane.serializers import DecisionInSerializer
from controlplane.services import submit_decision
from controlplane.tenancy import (
    actor_of,
    can_operate,
    can_submit,
    current_membership,
    current_org,
    submission_workspace,
)
from mutations.serializers import RuntimeEventSerializer, mutation_entry, query_result
from mutations.services import API_SURFACE
from runs.approvals import ApprovalRefused
from runs.models import Approval
from runs.rollback import RollbackRefused, retry_rollback, rollback_evidence
from runs.serializers import WorkflowRunSerializer

LIST_LIMIT = 100


def decision_body(decision: Decision) -> dict[str, Any]:
    run = decision.runs.order_by("-created_at").first()
    return {
        **decision.as_document(),
        "requested_by": decision.requested_by,
        "trace_id": decision.trace_id,
        "received_at": decision.received_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "payload_hash": decision.payload_hash,
        "policy_evaluation": selectors.evaluation_summary(getattr(decision, "evaluation", None)),
        "run": WorkflowRunSerializer(run).data if run else None,
    }


@document(methods=["GET"], operation_id="decisions_list", responses={200: schema.DecisionList})
@document(
    methods=["POST"],
    request=DecisionInSerializer,
    responses={200: schema.DecisionOut, 201: schema.DecisionOut},
)
@api_view(["GET", "POST"])
def decisions(request: Request) -> Response:
    """POST: submit a decision. GET: the newest decisions of your organization."""
    if request.method == "POST":
        membership = current_membership(request)
        if not can_submit(membership):
            raise PermissionDenied("Only operators and admins may submit decisions.")
        serializer = DecisionInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        document = {k: request.data[k] for k in serializer.validated_data}
        submission = submit_decision(
            workspace=submission_workspace(request, membership),
            document=document,
            requested_by=actor_of(request.user),
            surface=API_SURFACE,
            user_id=request.user.pk,
        )
        code = status.HTTP_201_CREATED if submission.created else status.HTTP_200_OK
        return Response(decision_body(submission.decision), status=code)
    org = current_org(request)
    rows = selectors.decisions_for(org)[:LIST_LIMIT]
    return Response(
        {
            "entries": [
                {
                    **d.as_document(),
                    "status": selectors.decision_status(d),
                    "run_id": d.run_id,  # type: ignore[attr-defined]
                    "received_at": d.received_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
                for d in rows
            ]
        }
    )


@document(responses={200: schema.DecisionOut})
@api_view(["GET"])
def decision_detail(request: Request, decision_id: str) -> Response:
    decision = selectors.get_decision(current_org(request), decision_id)
    return Response(decision_body(decision))


def _queried_decision(request: Request) -> Decision:
    """Return the decision named by ?decision_id=, which must be one of the user's org."""
    decision_id = request.query_params.get("decision_id")
    if not decision_id:
        raise ValidationError({"decision_id": ["This query parameter is required."]})
    return selectors.get_decision(current_org(request), decision_id)


@document(parameters=[schema.DECISION_ID], responses={200: schema.MutationQueryResult})
@api_view(["GET"])
def mutations(request: Request) -> Response:
    """The Mutation Log of one decision, in the order the changes were made."""
    decision = _queried_decision(request)
    entries = [mutation_entry(m) for m in selectors.mutations_for(decision.org, decision.id)]
    return Response(query_result({"decision_id": decision.id}, entries))


@document(parameters=[schema.DECISION_ID], responses={200: schema.EventQueryResult})
@api_view(["GET"])
def events(request: Request) -> Response:
    decision = _queried_decision(request)
    entries = selectors.events_for(decision.org, decision.id)
    data = RuntimeEventSerializer(entries, many=True).data
    return Response(query_result({"decision_id": decision.id}, list(data)))


@document(responses={200: WorkflowRunSerializer})
@api_view(["GET"])
def run_detail(request: Request, run_id: str) -> Response:
    run = selectors.get_run(current_org(request), run_id)
    return Response(WorkflowRunSerializer(run).data)


@document(responses={200: schema.Evidence})
@api_view(["GET"])
def run_evidence(request: Request, run_id: str) -> Response:
    """The rollback evidence record of a run."""
    run = selectors.get_run(current_org(request), run_id)
    return Response(rollback_evidence(run))


@document(request=None, responses={202: WorkflowRunSerializer})
@api_view(["POST"])
def run_rollback(request: Request, run_id: str) -> Response:
    """Retry the failed compensations of a compensation_failed run."""
    membership = current_membership(request)
    run = selectors.get_run(membership.org, run_id)
    if not can_operate(membership):
        raise PermissionDenied("Only operators and admins may retry a rollback.")
    try:
        run = retry_rollback(
            run_id=run.run_id,
            org_id=membership.org_id,
            requested_by=actor_of(request.user),
            user_id=request.user.pk,
        )
    except RollbackRefused as refused:
        return Response(error_body("conflict", str(refused)), status=status.HTTP_409_CONFLICT)
    return Response(WorkflowRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class ApprovalSerializer(serializers.Serializer[dict[str, Any]]):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


def _decide(request: Request, run_id: str, *, approve: bool) -> Response:
    membership = current_membership(request)
    run = selectors.get_run(membership.org, run_id)
    body = ApprovalSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    try:
        approval = decide_held_run(
            membership=membership,
            user=request.user,
            run=run,
            approve=approve,
            comment=body.validated_data["comment"],
        )
    except Approval.DoesNotExist:
        return Response(
            error_body("conflict", f"Run {run.run_id} was never held for approval."),
            status=status.HTTP_409_CONFLICT,
        )
    except ApprovalRefused as refused:
        code = status.HTTP_409_CONFLICT if refused.conflict else status.HTTP_403_FORBIDDEN
        return Response(
            error_body("conflict" if refused.conflict else "permission_denied", str(refused)),
            status=code,
        )
    run.refresh_from_db()
    return Response(
        {
            "approval_id": approval.id,
            "status": approval.status,
            "decided_by": actor_of(request.user),
            "comment": approval.comment,
            "run": WorkflowRunSerializer(run).data,
        }
    )


@document(request=ApprovalSerializer, responses={200: schema.ApprovalResult})
@api_view(["POST"])
def run_approve(request: Request, run_id: str) -> Response:
    """Approve a held run: it is dispatched to the runners."""
    return _decide(request, run_id, approve=True)


@document(request=ApprovalSerializer, responses={200: schema.ApprovalResult})
@api_view(["POST"])
def run_reject(request: Request, run_id: str) -> Response:
    """Reject a held run: it ends rejected and changes nothing."""
    return _decide(request, run_id, approve=False)


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
        "started_at": drill.started_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "decision_id": drill.decision_id,
        "run_id": drill.run_id,
        "run_status": drill.run.status if drill.run else None,
        "passed": drill.passed,
        "checks": drill.checks,
    }


@document(request=DrillInSerializer, responses={201: schema.DrillOut})
@api_view(["POST"])
def drills(request: Request) -> Response:
    """Start a drill: a real run on sandbox platforms with a planned fault."""
    membership = current_membership(request)
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
    org = current_org(request)
    drill = get_object_or_404(Drill.objects.select_related("run"), pk=drill_id, org=org)
    return Response(drill_body(verify_drill(drill)))
