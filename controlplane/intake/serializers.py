"""Validation of what agents submit, with errors that name the field."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from mutations.ids import is_valid_id
from runs.workflows import decision_types, workflow_for
from runs.workflows.action_schema import PRIORITIES


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers and booleans instead of converting them."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    default_error_messages = {"invalid": "Must be true or false."}  # noqa: RUF012

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictFloatField(serializers.FloatField):
    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class DecisionInSerializer(serializers.Serializer[dict[str, Any]]):
    id = StrictCharField(required=False, max_length=30)
    type = StrictCharField(max_length=100)
    priority = serializers.ChoiceField(choices=PRIORITIES)
    confidence = StrictFloatField(min_value=0.0, max_value=1.0)
    summary = StrictCharField(max_length=500)
    reasoning = StrictCharField(max_length=5000, allow_blank=True)
    auto_executable = StrictBooleanField()
    action = serializers.DictField()
    computed_at = serializers.DateTimeField()
    policy_version = StrictCharField(max_length=100)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({k: ["Unknown field."] for k in unknown})
        return super().to_internal_value(data)

    def validate_id(self, value: str) -> str:
        if not is_valid_id(value, "dec"):
            raise serializers.ValidationError(
                "Must be 'dec_' followed by 26 characters of 0-9 and A-Z."
            )
        return value

    def validate_type(self, value: str) -> str:
        if workflow_for(value) is None:
            raise serializers.ValidationError(
                f"No workflow serves decision type {value!r}; "
                f"known types: {', '.join(decision_types())}."
            )
        return value

    def validate_action(self, value: dict[str, Any]) -> dict[str, Any]:
        where = _nul_in(value)
        if where is not None:
            # PostgreSQL's JSON cannot hold it, and no platform wants it.
            raise serializers.ValidationError({where: ["Must not contain the NUL character."]})
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        action = attrs["action"]
        if action.get("type") != attrs["type"]:
            raise serializers.ValidationError(
                {"action": {"type": [f"Must equal type {attrs['type']!r}."]}}
            )
        workflow = workflow_for(attrs["type"])
        assert workflow is not None  # validate_type checked it
        problems = workflow.validate_action(action)
        if problems:
            raise serializers.ValidationError(
                {
                    "action": {
                        k.removeprefix("action."): [v[0].upper() + v[1:] + "."]
                        for k, v in problems.items()
                    }
                }
            )
        return attrs


def _nul_in(value: Any, path: str = "") -> str | None:
    """Return where in a JSON value a key or a string holds the NUL character, if anywhere."""
    if isinstance(value, str):
        return path or "value" if "\x00" in value else None
    items: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                return f"{path}.{key!r}".lstrip(".")
            items.append((f"{path}.{key}".lstrip("."), item))
    elif isinstance(value, list):
        items = [(f"{path}[{n}]", item) for n, item in enumerate(value)]
    for where, item in items:
        found = _nul_in(item, where)
        if found is not None:
            return found
    return None
