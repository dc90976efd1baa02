"""The reference platform's record store: JSON objects keyed by their target.

Every change is all-or-nothing: the new object is built on a copy and stored only when
every field passed, so a refused change leaves the store as it was.
"""

from __future__ import annotations

import copy
import json
from typing import Any

Objects = dict[str, dict[str, Any]]  # canonical target -> object
MUTATION_TYPES = ("create", "delete", "set", "add", "remove", "increment")


class Refused(Exception):
    """A request the platform answers with an error: HTTP status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def canonical(value: Any) -> str:
    """Return the canonical JSON of a target: sorted keys, no whitespace."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def require_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Refused(400, "invalid_payload", f"{what} must be a JSON object; got {value!r:.100}")
    return value


def apply_change(
    objects: Objects, mutation_type: Any, target: Any, payload: Any
) -> dict[str, Any] | None:
    """Apply one contract mutation and return the object after it (None after a delete)."""
    if mutation_type not in MUTATION_TYPES:
        raise Refused(
            400,
            "unsupported_operation",
            f"mutation_type {mutation_type!r} is not one of {', '.join(MUTATION_TYPES)}",
        )
    require_object(target, "target")
    require_object(payload, "payload")
    key = canonical(target)
    if mutation_type == "create":
        if key in objects:
            raise Refused(422, "already_exists", f"an object already exists at {key}")
        objects[key] = copy.deepcopy(payload)
        return copy.deepcopy(payload)
    if key not in objects:
        raise Refused(404, "not_found", f"no object at {key}")
    if mutation_type == "delete":
        del objects[key]
        return None
    after = copy.deepcopy(objects[key])
    if mutation_type == "set":
        after.update(copy.deepcopy(payload))
    elif mutation_type == "increment":
        _increment(after, payload, key)
    else:
        _add_or_remove(after, payload, key, adding=mutation_type == "add")
    objects[key] = after
    return copy.deepcopy(after)


def replace_object(objects: Objects, target: dict[str, Any], state: Any) -> dict[str, Any]:
    """Create or replace the object at a target (the records route's PUT)."""
    objects[canonical(target)] = copy.deepcopy(require_object(state, "body"))
    return copy.deepcopy(state)


def delete_object(objects: Objects, target: dict[str, Any]) -> None:
    key = canonical(target)
    if key not in objects:
        raise Refused(404, "not_found", f"no object at {key}")
    del objects[key]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _increment(after: dict[str, Any], payload: dict[str, Any], key: str) -> None:
    for field, delta in payload.items():
        if not _is_number(delta):
            raise Refused(
                400, "invalid_payload", f"increment of {field!r} must be a number; got {delta!r}"
            )
        old = after.get(field, 0)
        if not _is_number(old):
            raise Refused(422, "not_a_number", f"{field!r} of {key} holds {old!r}, not a number")
        new = old + delta
        if new < 0:
            raise Refused(
                422, "would_go_negative", f"{field!r} of {key} is {old}; {old} + {delta} < 0"
            )
        after[field] = new


def _add_or_remove(after: dict[str, Any], payload: dict[str, Any], key: str, adding: bool) -> None:
    for field, value in payload.items():
        values = after.setdefault(field, []) if adding else after.get(field, [])
        if not isinstance(values, list):
            raise Refused(422, "not_a_list", f"{field!r} of {key} holds {values!r}, not a list")
        at = _position(values, value)
        if adding and at >= 0:
            raise Refused(422, "already_present", f"{value!r} is already in {field!r} of {key}")
        if not adding and at < 0:
            raise Refused(422, "not_present", f"{value!r} is not in {field!r} of {key}")
        if adding:
            values.append(copy.deepcopy(value))
        else:
            del values[at]


def _position(values: list[Any], value: Any) -> int:
    """Return where a value is in a list, compared as JSON (where true is not 1), or -1."""
    wanted = canonical(value)
    return next((i for i, item in enumerate(values) if canonical(item) == wanted), -1)
