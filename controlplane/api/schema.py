"""The OpenAPI description of the API beyond its shapes (controlplane.api.shapes): the
bearer-token scheme, the error answers every operation may give, and query parameters."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema

from controlplane.api.shapes import Error
from controlplane.pages.forms import DECISION_STATES, DRILL_CHOICES, Cursor
from mutations.connectors import known_platforms
from runs.workflows import decision_types
from runs.workflows.action_schema import DECISION_ID_PATTERN, NO_NUL, decision_schema
from runs.workflows.registry import all_workflows


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


def query_values() -> dict[str, dict[str, Any]]:
    """Return the exact schema of each query parameter's values (read when the schema is
    built: decision types and platforms are loaded at start-up). "" is "any"."""
    return {
        "q": {"type": "string", "maxLength": 200, "pattern": NO_NUL},
        "status": {"type": "string", "enum": [value for value, _ in DECISION_STATES]},
        "type": {"type": "string", "enum": ["", *decision_types()]},
        "platform": {"type": "string", "enum": ["", *known_platforms()]},
        "received_from": {"type": "string", "format": "date"},
        "received_to": {"type": "string", "format": "date"},
        "drills": {"type": "string", "enum": ["", *(value for value, _ in DRILL_CHOICES)]},
        "after": {"type": "string", "pattern": Cursor.PATTERN},
        "decision_id": {"type": "string", "pattern": DECISION_ID_PATTERN},
    }


def exact_inputs(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Say exactly what the API accepts where serializers cannot (a drf-spectacular
    postprocessing hook): the decision document of the registered workflows, each query
    parameter's values, and no NUL character in any text sent."""
    schemas = result["components"]["schemas"]
    schemas["DecisionInRequest"] = decision_schema(all_workflows())
    for name, schema in schemas.items():
        if name.endswith("Request"):
            for prop in schema.get("properties", {}).values():
                _refuse_nul(prop)
    values = query_values()
    for operations in result["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query" and parameter["name"] in values:
                    parameter["schema"] = values[parameter["name"]]
    return result


def _refuse_nul(prop: dict[str, Any]) -> None:
    if prop.get("type") == "string" and not {"pattern", "enum", "format"} & set(prop):
        prop["pattern"] = NO_NUL
