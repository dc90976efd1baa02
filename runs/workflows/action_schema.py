"""The JSON Schema of a decision each workflow accepts, from its declared action fields:
what agents (MCP tools, generated clients) are told to send."""

from __future__ import annotations

from typing import Any

from runs.workflows.registry import Workflow

JSON_TYPES = {"list": "array"}  # an action field's type -> its JSON Schema type
PRIORITIES = ("low", "medium", "high", "critical")


def action_schema(workflow: Workflow) -> dict[str, Any]:
    """Return the JSON Schema of the ``action`` object a decision of this workflow carries."""
    properties: dict[str, Any] = {"type": {"const": workflow.decision_type}}
    required = ["type"]
    for name, spec in workflow.action_fields.items():
        kind = str(spec.get("type", "string"))
        prop: dict[str, Any] = {"type": JSON_TYPES.get(kind, kind)}
        for key in ("enum", "description"):
            if key in spec:
                prop[key] = spec[key]
        properties[name] = prop
        if spec.get("required", True):
            required.append(name)
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        # A workflow without declared fields checks its action itself.
        "additionalProperties": not workflow.action_fields,
    }


def decision_schema(workflows: list[Workflow]) -> dict[str, Any]:
    """Return the JSON Schema of a decision document whose action is one of these
    workflows' actions."""
    return {
        "type": "object",
        "properties": {
            "id": {
                "type": "string",
                "pattern": "^dec_[0-9A-Z]{26}$",
                "description": "your own id, to submit again safely; omit it for a new one",
            },
            "type": {"type": "string", "enum": sorted({w.decision_type for w in workflows})},
            "priority": {"type": "string", "enum": list(PRIORITIES)},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "summary": {"type": "string", "minLength": 1, "maxLength": 500},
            "reasoning": {"type": "string", "maxLength": 5000},
            "auto_executable": {"type": "boolean"},
            "action": {"oneOf": [action_schema(w) for w in workflows]},
            "computed_at": {"type": "string", "format": "date-time"},
            "policy_version": {"type": "string", "minLength": 1, "maxLength": 100},
        },
        "required": [
            "type",
            "priority",
            "confidence",
            "summary",
            "reasoning",
            "auto_executable",
            "action",
            "computed_at",
            "policy_version",
        ],
        "additionalProperties": False,
    }
