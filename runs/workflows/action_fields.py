"""The action fields a YAML workflow declares (``action: {amount: {type: number}}``) and
the check of a decision's action against them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
FIELD_KEYS = frozenset({"type", "required", "enum", "description"})
FIELD_TYPES: dict[str, Any] = {  # an action field's declared type: the values it accepts
    "string": str,
    "integer": int,
    "number": int | float,
    "boolean": bool,
    "object": dict,
    "list": list,
}


def validate_action(
    action: Mapping[str, Any], fields: Mapping[str, Mapping[str, Any]]
) -> dict[str, str]:
    """Return an error per declared action field that is missing or has the wrong value."""
    if not isinstance(action, Mapping):
        return {"action": "must be an object"}
    errors: dict[str, str] = {}
    for name, spec in fields.items():
        key, kind = f"action.{name}", spec.get("type", "string")
        value = action.get(name)
        if value is None:
            if spec.get("required", True):
                errors[key] = f"required ({a_kind(kind)})"
        elif type_error(value, kind):
            errors[key] = f"must be {a_kind(kind)}; got {value!r}"
        elif kind == "string" and not value.strip():
            errors[key] = "must not be empty"
        elif "enum" in spec and value not in spec["enum"]:
            errors[key] = f"must be one of {', '.join(map(str, spec['enum']))}; got {value!r}"
    return errors


def type_error(value: Any, kind: str) -> bool:
    if isinstance(value, bool):  # True is an int to Python, not to a decision's author
        return kind != "boolean"
    return not isinstance(value, FIELD_TYPES[kind])


def a_kind(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
