"""Money a decision's action moves, written the way a person reads it: $800/day."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

SIGNS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}
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
    digits = f"{abs(value):,.2f}".removesuffix(".00")
    sign = SIGNS.get(currency.upper())
    money = f"{sign}{digits}" if sign else f"{digits} {currency}".strip()
    return ("-" if value < 0 else "") + money + PER.get(cadence, "")


def amount_of(action: Mapping[str, Any]) -> str:
    """Return the action's ``amount`` with its ``currency`` and ``cadence`` ("$800/day",
    "1,250.50 CHF"), or "" when the action moves no money."""
    value = _number(action)
    if value is None:
        return ""
    return _written(value, str(action.get("currency") or ""), str(action.get("cadence") or ""))


def total_of(actions: Iterable[Mapping[str, Any]]) -> str:
    """Return the money several actions move together, a sum per currency and cadence
    ("$15,000/day + 200 CHF/week"), or "" when they move none."""
    sums: dict[tuple[str, str], Decimal] = {}
    for action in actions:
        value = _number(action)
        if value is not None:
            key = (str(action.get("currency") or ""), str(action.get("cadence") or ""))
            sums[key] = sums.get(key, Decimal(0)) + value
    return " + ".join(_written(value, *key) for key, value in sorted(sums.items()))
