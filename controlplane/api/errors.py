"""One error format for the whole API: a code, a message, and errors by field path."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from controlplane.api.shapes import Error
from controlplane.drills.start import DrillRefused
from controlplane.exceptions import DecisionConflict, NoOrganization
from controlplane.intake.redrive import RedriveRefused
from controlplane.policy.rules import PolicyInvalid
from runs.approvals import ApprovalRefused
from runs.models import Approval
from runs.rollback import RollbackRefused


def flatten(detail: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn DRF's nested error detail into {"action.amount": ["..."]}."""
    if isinstance(detail, dict):
        out: dict[str, list[str]] = {}
        for key, value in detail.items():
            path = str(key) if key != "non_field_errors" else ""
            out.update(flatten(value, f"{prefix}.{path}".strip(".") if path else prefix))
        return out
    if isinstance(detail, list) and detail and all(not isinstance(d, dict | list) for d in detail):
        return {prefix or "non_field_errors": [str(d) for d in detail]}
    if isinstance(detail, list):
        out = {}
        for index, value in enumerate(detail):
            out.update(flatten(value, f"{prefix}[{index}]"))
        return out
    return {prefix or "non_field_errors": [str(detail)]}


def error_body(
    code: str, message: str, fields: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """Return the one error shape (shapes.Error) of every refusal."""
    return Error({"error": {"code": code, "message": message, "fields": fields or {}}}).data


def handle_exception(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Answer domain errors and DRF's own with the one error shape; leave the rest to Django."""
    refused = refusal(exc, context)
    if refused is not None:
        return refused
    exc = as_invalid_input(exc)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        # Keep the message: it names the role needed (access.exceptions.RoleRequired).
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = exception_handler(exc, context)
    if response is None or not isinstance(exc, exceptions.APIException):
        return response
    if isinstance(exc, exceptions.ValidationError):
        fields = flatten(exc.detail)
        names = ", ".join(fields)
        response.data = error_body("invalid", f"Invalid input: {names}.", fields)
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else "error"
        response.data = error_body(code, str(exc.detail))
    return response


def refusal(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Return the answer to a domain error that is not about the input, or None."""
    if isinstance(exc, DecisionConflict):
        return Response(
            error_body("conflict", str(exc), {"id": [str(exc)]}), status.HTTP_409_CONFLICT
        )
    if isinstance(exc, RollbackRefused | RedriveRefused) or (
        isinstance(exc, ApprovalRefused) and exc.conflict
    ):
        return Response(error_body("conflict", str(exc)), status.HTTP_409_CONFLICT)
    if isinstance(exc, ApprovalRefused | NoOrganization):
        return Response(error_body("permission_denied", str(exc)), status.HTTP_403_FORBIDDEN)
    run_id = context.get("kwargs", {}).get("run_id")
    if isinstance(exc, Approval.DoesNotExist) and run_id:
        # Deciding looks the run's approval up: none means the run was never held.
        message = f"Run {run_id} was never held for approval."
        return Response(error_body("conflict", message), status.HTTP_409_CONFLICT)
    return None


def as_invalid_input(exc: Exception) -> Exception:
    """Return a domain error about the input as the ValidationError it amounts to."""
    if isinstance(exc, DrillRefused):
        return exceptions.ValidationError({"non_field_errors": [str(exc)]})
    if isinstance(exc, PolicyInvalid):
        return exceptions.ValidationError(
            {
                p.field: [f"line {p.line}: {p.message}" if p.line else p.message]
                for p in exc.problems
            }
        )
    return exc
