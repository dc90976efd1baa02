"""The JSON Schema of the decisions the registered workflows accept: what agents (the MCP
tools) and generated clients (the OpenAPI schema) are told to send."""

from __future__ import annotations

from typing import Any

from runs.workflows.action_fields import NO_NUL, NON_BLANK
from runs.workflows.registry import Workflow

__all__ = ["DECISION_ID_PATTERN", "NO_NUL", "PRIORITIES", "action_schema", "decision_schema"]

PRIORITIES = ("low", "medium", "high", "critical")
DECISION_ID_PATTERN = "^dec_[0-9A-Z]{26}$"


def action_schema(workflow: Workflow) -> dict[str, Any]:
    """Return the JSON Schema of the ``action`` object of this workflow's decisions."""
    schema = dict(workflow.action_json_schema()) if workflow.action_json_schema else {}
    schema.setdefault("type", "object")
    schema["properties"] = {
        "type": {"const": workflow.decision_type},
        **schema.get("properties", {}),
    }
    schema["required"] = ["type", *schema.get("required", [])]
    return schema


def decision_schema(workflows: list[Workflow]) -> dict[str, Any]:
    """Return the JSON Schema of a decision document: one of these workflows' decision
    types, with that type's action."""
    return {
        "type": "object",
        "properties": {
            "id": {
                "type": "string",
                "pattern": DECISION_ID_PATTERN,
                "description": "your own id, to submit again safely; omit it for a new one",
            },
            "type": {"type": "string", "enum": sorted({w.decision_type for w in workflows})},
            "priority": {"type": "string", "enum": list(PRIORITIES)},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "summary": text(500),
            "reasoning": {"type": "string", "maxLength": 5000, "pattern": NO_NUL},
            "auto_executable": {"type": "boolean"},
            "action": {"oneOf": [action_schema(w) for w in workflows]},
            "computed_at": {"type": "string", "format": "date-time"},
            "policy_version": text(100),
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
        # The action is of the decision's own type.
        "allOf": [
            {
                "if": {"properties": {"type": {"const": w.decision_type}}, "required": ["type"]},
                "then": {"properties": {"action": action_schema(w)}},
            }
            for w in workflows
        ],
    }


def text(max_length: int) -> dict[str, Any]:
    """Return the schema of a required text field of at most ``max_length`` characters."""
    return {"type": "string", "minLength": 1, "maxLength": max_length, "pattern": NON_BLANK}
