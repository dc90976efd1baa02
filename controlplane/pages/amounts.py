"""Money a decision's action moves, written as every page and the API write it:
USD 800.00/day."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

PER = {"hourly": "/h", "daily": "/day", "weekly": "/week", "monthly": "/month"}


def _number(action: Mapping[str, Any]) -> Decimal | None:
    amount = action.get("amount")
    if isinstance(amount, bool) or not isinstance(amount, int | float | str | Decimal):
        return None
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _written(value: Decimal, currency: str, cadence: str) -> str:
    return f"{currency} {value:,.2f}".strip() + PER.get(cadence, "")


def amount_of(action: Mapping[str, Any]) -> str:
    """Return the action's ``amount`` with its ``currency`` and ``cadence`` ("USD
    800.00/day", "CHF 1,250.50"), or "" when the action moves no money."""
    value = _number(action)
    if value is None:
        return ""
    return _written(value, str(action.get("currency") or ""), str(action.get("cadence") or ""))


def total_of(actions: Iterable[Mapping[str, Any]]) -> str:
    """Return the money several actions move together, a sum per currency and cadence
    ("CHF 200.00/week + USD 15,000.00/day"), or "" when they move none."""
    sums: dict[tuple[str, str], Decimal] = {}
    for action in actions:
        value = _number(action)
        if value is not None:
            key = (str(action.get("currency") or ""), str(action.get("cadence") or ""))
            sums[key] = sums.get(key, Decimal(0)) + value
    return " + ".join(_written(value, *key) for key, value in sorted(sums.items()))
