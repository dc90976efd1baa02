import json
from typing import Any

from django import template

from mutations.timestamps import UTC_FORMAT

register = template.Library()


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False)


@register.filter
def utc(value: Any) -> str:
    """Format an aware datetime the way the API does: 2026-04-22T18:12:11Z."""
    return value.strftime(UTC_FORMAT) if value else ""


@register.filter
def short_time(value: Any) -> str:
    return value.strftime("%H:%M:%SZ") if value else ""


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    return mapping.get(key, []) if mapping else []
