"""The values of a state snapshot as a person reads them: its platform objects, their
fields in words, money for amounts in micros, signed differences."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

MINUS = "\u2212"
LABEL_KEYS = ("campaign_id", "id", "name", "key")  # what names an object in a list
ObjectKey = tuple[str, str]  # platform, label


def objects_of(snapshot: dict[str, Any], scope: dict[str, Any]) -> dict[ObjectKey, Any]:
    """Return each platform object of a snapshot by (platform, label): the items of a
    platform's list (a sandbox's campaigns), or a platform's one object (None: absent)."""
    found: dict[ObjectKey, Any] = {}
    for platform in sorted(snapshot):
        state = snapshot[platform]
        if isinstance(state, list):
            for n, item in enumerate(state, start=1):
                found[(platform, _item_label(item, n))] = item
        else:
            found[(platform, _target_label(scope.get(platform)))] = state
    return found


def _item_label(item: Any, n: int) -> str:
    if isinstance(item, dict):
        for key in LABEL_KEYS:
            if isinstance(item.get(key), str | int):
                return str(item[key])
    return f"#{n}"


def _target_label(target: Any) -> str:
    """Name a platform's one object by its scope target: ``group=payments-oncall``."""
    if not isinstance(target, dict) or not target:
        return "state"
    request = target.get("request")
    if len(target) == 1 and isinstance(request, dict) and "path" in request:
        return str(request["path"])
    return ", ".join(f"{k}={v}" for k, v in sorted(target.items()))


def fields_of(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    return {} if value is None else {"value": value}


def field_label(name: str) -> str:
    """Return a field's name in words: ``daily_budget_micros`` -> daily budget."""
    return name.removesuffix("_micros").replace("_", " ")


def field_value(name: str, value: Any, currency: str = "USD") -> str:
    """Return a field's value as a person reads it: money for ``*_micros``."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if name.endswith("_micros") and isinstance(value, int):
        return money(Decimal(value) / 1_000_000, currency)
    if isinstance(value, list):
        return ", ".join(field_value("", item, currency) for item in value) or "none"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(", ", ": "))
    return str(value)


def money(amount: Decimal, currency: str, *, signed: bool = False) -> str:
    sign = (MINUS if amount < 0 else "+") if signed else (MINUS if amount < 0 else "")
    text = f"{abs(amount):,.2f}"
    return f"{sign}${text}" if currency == "USD" else f"{sign}{text} {currency}"


def field_delta(name: str, before: Any, after: Any, currency: str = "USD") -> str:
    """Return the signed difference of a number that changed (a minus sign and $800.00),
    else ""."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (before, after))
    if not numbers or before == after:
        return ""
    if name.endswith("_micros") and isinstance(before, int) and isinstance(after, int):
        return money(Decimal(after - before) / 1_000_000, currency, signed=True)
    difference = after - before
    return f"{MINUS if difference < 0 else '+'}{abs(difference):g}"
