"""The OpenAPI description of the API beyond its shapes (controlplane.api.shapes): the
bearer-token scheme, the error answers every operation may give, and query parameters."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema

from controlplane.api.shapes import Error


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = "controlplane.access.tokens.BearerTokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "bst_<id>_<secret>"}


ERRORS = {
    code: OpenApiResponse(Error, description=text)
    for code, text in (
        (400, "Invalid input; `fields` names each field and what is wrong."),
        (401, "Missing, unknown or revoked credentials."),
        (403, "Your role may not do this; the message names the role needed."),
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


DECISION_FILTERS = [
    OpenApiParameter(name, str, OpenApiParameter.QUERY, description=text)
    for name, text in (
        ("q", "Text in the summary, or a dec_ id."),
        ("status", "A run status, or denied."),
        ("type", "A decision type."),
        ("platform", "A platform the decision touches."),
        ("received_from", "YYYY-MM-DD"),
        ("received_to", "YYYY-MM-DD"),
        ("drills", "exclude (the default: drills are left out), include or only."),
        ("after", "The cursor of the next page, from `next`."),
    )
]
