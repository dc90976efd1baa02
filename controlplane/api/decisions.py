"""The HTTP API under /api/v1/: thin views over services and selectors."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.access.tenancy import (
    actor_of,
    can_operate,
    can_submit,
    current_membership,
    current_org,
    submission_workspace,
)
from controlplane.api import schema as schema
from controlplane.api.errors import error_body
from controlplane.api.schema import document
from controlplane.intake.approvals import decide_held_run
from controlplane.intake.serializers import DecisionInSerializer
from controlplane.intake.submit import submit_decision
from controlplane.models import Decision
from controlplane.pages import selectors
from controlplane.pages.forms import Cursor, DecisionFilterForm
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


@document(
    methods=["GET"],
    operation_id="decisions_list",
    parameters=schema.DECISION_FILTERS,
    responses={200: schema.DecisionList},
)
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
    form = DecisionFilterForm(request.query_params)
    if not form.is_valid():
        raise ValidationError(
            {field: [str(e) for e in errors] for field, errors in form.errors.items()}
        )
    rows, following = selectors.decision_page(
        current_org(request), form.cleaned_data, size=LIST_LIMIT
    )
    next_url = None
    if following is not None:
        query = request.query_params.copy()
        query["after"] = Cursor.encode(*following)
        next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
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
            ],
            "next": next_url,
        }
    )


@document(responses={200: schema.DecisionDetail})
@api_view(["GET"])
def decision_detail(request: Request, decision_id: str) -> Response:
    """A decision with its timeline: the Mutation Log entries and the runtime events."""
    org = current_org(request)
    decision = selectors.get_decision(org, decision_id)
    mutations = [mutation_entry(m) for m in selectors.mutations_for(org, decision.id)]
    events = RuntimeEventSerializer(selectors.events_for(org, decision.id), many=True).data
    return Response({**decision_body(decision), "mutations": mutations, "events": events})


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
