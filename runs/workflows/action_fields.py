"""The action fields a YAML workflow declares (``action: {amount: {type: number}}``) and
the check of a decision's action against them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mutations.yamltext import LineMapping, Problem, unknown_keys

FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
FIELD_KEYS = frozenset({"type", "required", "enum", "description"})
JSON_TYPES = {"list": "array"}  # a field's type -> its JSON Schema type, where they differ
NO_NUL = "^[^\\u0000]*$"  # text refuses the NUL character (PostgreSQL's JSON cannot hold it)
NON_BLANK = "^[^\\u0000]*\\S[^\\u0000]*$"  # and a required field's needs a non-space
# A value inside an object or list field: text without NUL, numbers, true/false, null.
SCALAR = {"type": ["string", "number", "boolean", "null"], "pattern": NO_NUL}
FIELD_TYPES: dict[str, Any] = {  # an action field's declared type: the values it accepts
    "string": str,
    "integer": int,
    "number": int | float,
    "boolean": bool,
    "object": dict,
    "list": list,
}


def parse_fields(doc: LineMapping, problems: list[Problem]) -> dict[str, LineMapping]:
    """Return the declared fields (``action:``); add a problem for each malformed one."""
    raw = doc.get("action", LineMapping())
    if not isinstance(raw, LineMapping):
        message = "must map field names to {type: ...}"
        problems.append(Problem(doc.line_of("action"), "action", message))
        return {}

    def bad(spec: LineMapping, key: str, field: str, message: str) -> None:
        problems.append(Problem(spec.line_of(key), f"{field}.{key}", message))

    for name, spec in raw.items():
        field = f"action.{name}"
        if not FIELD_NAME.match(name):
            problems.append(
                Problem(raw.lines[name], field, "a field name is letters, digits and _")
            )
        if not isinstance(spec, LineMapping):
            message = "must be a mapping such as {type: string}"
            problems.append(Problem(raw.lines[name], field, message))
            continue
        unknown_keys(spec, FIELD_KEYS, field, problems)
        kind = str(spec.get("type"))
        if kind not in FIELD_TYPES:
            got = "required" if "type" not in spec else f"got {spec['type']!r}"
            bad(spec, "type", field, f"one of {', '.join(FIELD_TYPES)}; {got}")
        if not isinstance(spec.get("required", True), bool):
            bad(spec, "required", field, "must be true or false")
        if "enum" in spec and (not isinstance(spec["enum"], list) or not spec["enum"]):
            bad(spec, "enum", field, "a non-empty list of values")
        elif "enum" in spec and kind in FIELD_TYPES:
            for value in (v for v in spec["enum"] if type_error(v, kind)):
                bad(spec, "enum", field, f"{value!r} is not {a_kind(kind)}")
    return {name: spec for name, spec in raw.items() if isinstance(spec, LineMapping)}


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


def fields_schema(fields: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Return the JSON Schema of an action with these declared fields."""
    properties: dict[str, Any] = {}
    for name, spec in fields.items():
        kind = str(spec.get("type", "string"))
        prop: dict[str, Any] = {"type": JSON_TYPES.get(kind, kind)}
        if kind == "string":
            prop["pattern"] = NON_BLANK
        elif kind == "object":
            prop.update(propertyNames={"pattern": NO_NUL}, additionalProperties=SCALAR)
        elif kind == "list":
            prop["items"] = SCALAR
        if "enum" in spec:
            prop["enum"] = list(spec["enum"])
        if "description" in spec:
            prop["description"] = str(spec["description"])
        properties[name] = prop
    required = [name for name, spec in fields.items() if spec.get("required", True)]
    # Keys it does not declare are passed over by its checks; the schema leaves them out.
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


def type_error(value: Any, kind: str) -> bool:
    if isinstance(value, bool):  # True is an int to Python, not to a decision's author
        return kind != "boolean"
    return not isinstance(value, FIELD_TYPES[kind])


def a_kind(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
