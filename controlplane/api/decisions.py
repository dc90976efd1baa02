"""The HTTP API under /api/v1/: thin views over services and queries."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.access.tenancy import (
    OPERATORS,
    SUBMITTERS,
    actor_of,
    current_membership,
    current_org,
    require,
    submission_workspace,
)
from controlplane.api import schema as schema
from controlplane.api import shapes
from controlplane.api.schema import document
from controlplane.intake.approvals import decide_held_run
from controlplane.intake.redrive import REASON_MAX_LENGTH, redrive_decision
from controlplane.intake.serializers import DecisionInSerializer
from controlplane.intake.submit import submit_decision
from controlplane.models import Decision
from controlplane.pages import queries
from controlplane.pages.forms import Cursor, DecisionFilterForm
from mutations.services import Surface
from runs.rollback import retry_rollback, rollback_evidence
from runs.serializers import WorkflowRunSerializer

LIST_LIMIT = 100


@document(
    methods=["GET"],
    operation_id="decisions_list",
    parameters=schema.DECISION_FILTERS,
    responses={200: shapes.DecisionList},
)
@document(
    methods=["POST"],
    request=DecisionInSerializer,
    responses={200: shapes.DecisionOut, 201: shapes.DecisionOut},
)
@api_view(["GET", "POST"])
def decisions(request: Request) -> Response:
    """POST: submit a decision. GET: the newest decisions of your organization."""
    if request.method == "POST":
        membership = require(current_membership(request), SUBMITTERS, to="submit decisions")
        serializer = DecisionInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        document = {k: request.data[k] for k in serializer.validated_data}
        submission = submit_decision(
            workspace=submission_workspace(request, membership),
            document=document,
            requested_by=actor_of(request.user),
            surface=Surface.API,
            user_id=request.user.pk,
        )
        code = status.HTTP_201_CREATED if submission.created else status.HTTP_200_OK
        return Response(shapes.DecisionOut(submission.decision).data, status=code)
    form = DecisionFilterForm(request.query_params)
    if not form.is_valid():
        raise ValidationError(
            {field: [str(e) for e in errors] for field, errors in form.errors.items()}
        )
    rows, following = queries.decision_page(
        current_org(request), form.cleaned_data, size=LIST_LIMIT
    )
    next_url = None
    if following is not None:
        query = request.query_params.copy()
        query["after"] = Cursor.encode(*following)
        next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
    return Response(shapes.DecisionList({"entries": rows, "next": next_url}).data)


@document(responses={200: shapes.DecisionDetail})
@api_view(["GET"])
def decision_detail(request: Request, decision_id: str) -> Response:
    """A decision with its timeline: the Mutation Log entries and the runtime events."""
    decision = queries.get_decision(current_org(request), decision_id)
    return Response(shapes.DecisionDetail(decision).data)


class RedriveSerializer(serializers.Serializer[dict[str, Any]]):
    reason = serializers.CharField(
        max_length=REASON_MAX_LENGTH, help_text="Why the decision runs again; kept with it."
    )


@document(request=RedriveSerializer, responses={201: shapes.RedriveResult})
@api_view(["POST"])
def decision_redrive(request: Request, decision_id: str) -> Response:
    """Run a failed, compensated or expired decision again as a new attempt
    (`<decision_id>-attempt-<n>`): through the policy gate again, with new platform calls.
    Operators and admins only; who, when and why are recorded as events of the decision."""
    membership = current_membership(request)
    decision = queries.get_decision(membership.org, decision_id)
    body = RedriveSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    done = redrive_decision(
        membership=membership,
        user=request.user,
        decision_id=decision.id,
        reason=body.validated_data["reason"],
        surface=Surface.API,
    )
    result = {
        "decision_id": decision.id,
        "attempt": done.attempt,
        "outcome": done.outcome,
        "reason": body.validated_data["reason"].strip(),
        "requested_by": actor_of(request.user),
        "run": done.run,
    }
    return Response(shapes.RedriveResult(result).data, status=status.HTTP_201_CREATED)


def _queried_decision(request: Request) -> Decision:
    """Return the decision named by ?decision_id=, which must be one of the user's org."""
    decision_id = request.query_params.get("decision_id")
    if not decision_id:
        raise ValidationError({"decision_id": ["This query parameter is required."]})
    return queries.get_decision(current_org(request), decision_id)


@document(parameters=[schema.DECISION_ID], responses={200: shapes.MutationQueryResult})
@api_view(["GET"])
def mutations(request: Request) -> Response:
    """The Mutation Log of one decision, in the order the changes were made."""
    decision = _queried_decision(request)
    entries = list(queries.mutations_for(decision.org, decision.id))
    return Response(shapes.MutationQueryResult(shapes.decision_query(decision.id, entries)).data)


@document(parameters=[schema.DECISION_ID], responses={200: shapes.EventQueryResult})
@api_view(["GET"])
def events(request: Request) -> Response:
    decision = _queried_decision(request)
    entries = list(queries.events_for(decision.org, decision.id))
    return Response(shapes.EventQueryResult(shapes.decision_query(decision.id, entries)).data)


@document(responses={200: WorkflowRunSerializer})
@api_view(["GET"])
def run_detail(request: Request, run_id: str) -> Response:
    run = queries.get_run(current_org(request), run_id)
    return Response(WorkflowRunSerializer(run).data)


@document(responses={200: shapes.Evidence})
@api_view(["GET"])
def run_evidence(request: Request, run_id: str) -> Response:
    """The rollback evidence record of a run."""
    run = queries.get_run(current_org(request), run_id)
    return Response(shapes.Evidence(rollback_evidence(run)).data)


@document(request=None, responses={202: WorkflowRunSerializer})
@api_view(["POST"])
def run_rollback(request: Request, run_id: str) -> Response:
    """Retry the failed compensations of a compensation_failed run."""
    membership = current_membership(request)
    run = queries.get_run(membership.org, run_id)
    require(membership, OPERATORS, to="retry a rollback")
    run = retry_rollback(
        run_id=run.run_id,
        org_id=membership.org_id,
        requested_by=actor_of(request.user),
        surface=Surface.API,
        user_id=request.user.pk,
    )
    return Response(WorkflowRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class ApprovalSerializer(serializers.Serializer[dict[str, Any]]):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


def _decide(request: Request, run_id: str, *, approve: bool) -> Response:
    membership = current_membership(request)
    run = queries.get_run(membership.org, run_id)
    body = ApprovalSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    comment = body.validated_data["comment"]
    approval = decide_held_run(
        membership=membership,
        user=request.user,
        run=run,
        approve=approve,
        comment=comment,
        surface=Surface.API,
    )
    run.refresh_from_db()
    result = {
        "approval_id": approval.id,
        "status": approval.status,
        "decided_by": actor_of(request.user),
        "comment": comment,
        "approvals": approval.approvals_given,
        "approvals_required": approval.required,
        "remaining": approval.approvals_missing,
        "approved_by": approval.approved_by,
        "run": run,
    }
    return Response(shapes.ApprovalResult(result).data)


@document(request=ApprovalSerializer, responses={200: shapes.ApprovalResult})
@api_view(["POST"])
def run_approve(request: Request, run_id: str) -> Response:
    """Approve a held run: once it has the distinct approvals its policy rule asks for
    (one unless the rule says `approvals: n`), it is dispatched to the runners; until
    then the answer says how many are still needed."""
    return _decide(request, run_id, approve=True)


@document(request=ApprovalSerializer, responses={200: shapes.ApprovalResult})
@api_view(["POST"])
def run_reject(request: Request, run_id: str) -> Response:
    """Reject a held run: it ends rejected and changes nothing."""
    return _decide(request, run_id, approve=False)
