"""Replaying a run's Mutation Log entries over its before-state: each field's value after
each change, as the log says it was applied (the sandbox's budget deltas and statuses,
the reference platform's answered objects and its operations)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from controlplane.pages.state_values import ObjectKey, field_value, fields_of, objects_of
from mutations.models import Mutation

APPLIED = frozenset({Mutation.Status.SUCCESS, Mutation.Status.ROLLED_BACK})
# Keys Backstop adds to a compensation's payload: bookkeeping, not a change.
LINK_KEYS = frozenset({"compensates_mutation_id", "compensation_reason"})
_UNKNOWN = object()  # a change whose effect the log does not say


class LoggedChange(Protocol):
    """What the replay needs of a Mutation Log entry."""

    @property
    def mutation_id(self) -> str: ...

    @property
    def number(self) -> int: ...

    @property
    def step_id(self) -> str: ...

    @property
    def platform(self) -> str: ...

    @property
    def mutation_type(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def target(self) -> dict[str, Any]: ...

    @property
    def payload(self) -> dict[str, Any]: ...

    @property
    def result(self) -> Any: ...


@dataclass(frozen=True)
class PathStep:
    """A field's value after one logged change."""

    value: str
    raw: Any
    number: int
    step_id: str
    mutation_id: str


def replay(
    before: dict[str, Any], scope: dict[str, Any], changes: Sequence[LoggedChange], currency: str
) -> tuple[dict[ObjectKey, dict[str, list[PathStep]]], dict[str, str], dict[ObjectKey, Any]]:
    """Apply the applied changes to the before-state in order; return each field's values
    after each change that moved it, a note per platform whose changes the log does not
    explain, and the fields the log implies at the end."""
    state = copy.deepcopy(before)
    paths: dict[ObjectKey, dict[str, list[PathStep]]] = {}
    notes: dict[str, str] = {}
    for change in changes:
        platform = change.platform
        if change.status not in APPLIED or platform not in state or platform in notes:
            continue
        old = objects_of({platform: state[platform]}, scope)
        new_state = _apply(state[platform], change)
        if new_state is _UNKNOWN:
            notes[platform] = (
                f"The values after #{change.number} {change.step_id} are not known from the "
                "Mutation Log; the after column is the state read."
            )
            continue
        state[platform] = new_state
        for key, item in objects_of({platform: new_state}, scope).items():
            previous = fields_of(old.get(key))
            for name, value in fields_of(item).items():
                if previous.get(name) != value:
                    paths.setdefault(key, {}).setdefault(name, []).append(
                        PathStep(
                            field_value(name, value, currency),
                            value,
                            change.number,
                            change.step_id,
                            change.mutation_id,
                        )
                    )
    implied = {
        key: fields_of(item)
        for key, item in objects_of(state, scope).items()
        if key[0] not in notes
    }
    return paths, notes, implied


def _apply(state: Any, change: LoggedChange) -> Any:
    """Return a platform's state after one change, or _UNKNOWN when the log cannot say."""
    payload = {k: v for k, v in (change.payload or {}).items() if k not in LINK_KEYS}
    if isinstance(state, list):
        return _apply_to_items(state, change.target or {}, payload)
    result = change.result
    if isinstance(result, dict) and "object" in result:  # the object after it, as answered
        return copy.deepcopy(result["object"])
    current = dict(state) if isinstance(state, dict) else {}
    match change.mutation_type:
        case "create" | "put":
            return payload
        case "delete":
            return None
        case "set":
            return {**current, **payload}
        case "increment" if all(isinstance(v, int | float) for v in payload.values()):
            return {**current, **{k: current.get(k, 0) + v for k, v in payload.items()}}
        case "add" | "remove":
            return _add_or_remove(current, payload, adding=change.mutation_type == "add")
    return _UNKNOWN


def _apply_to_items(items: list[Any], target: dict[str, Any], payload: dict[str, Any]) -> Any:
    """Apply a budget delta or a status to the items a target names (the sandbox's way)."""
    if "daily_budget_delta_micros" in payload:
        name, delta = "daily_budget_micros", int(payload["daily_budget_delta_micros"])
    elif "status" in payload:
        name, delta = "status", None
    else:
        return _UNKNOWN
    changed = []
    for item in items:
        if isinstance(item, dict) and all(item.get(k) == v for k, v in target.items() if k in item):
            item = dict(item)
            item[name] = item.get(name, 0) + delta if delta is not None else payload["status"]
        changed.append(item)
    return changed


def _add_or_remove(current: dict[str, Any], payload: dict[str, Any], *, adding: bool) -> Any:
    after = dict(current)
    for name, value in payload.items():
        values = list(after.get(name) or [])
        if adding:
            values.append(value)
        elif value in values:
            values.remove(value)
        after[name] = values
    return after
