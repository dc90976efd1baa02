"""Prefixed, sortable identifiers: a prefix such as ``dec_`` and a 26-character ULID."""

import re

from ulid import ULID

PREFIXES = ("org", "ws", "dec", "wf", "mut", "evt", "trc", "apr", "drl", "pol", "sa")
_SHAPE = re.compile(r"^(?P<prefix>[a-z]+)_[0-9A-Z]{26}$")


def new_id(prefix: str) -> str:
    """Return a new id such as ``mut_01J1B7K9E0Q5TZNU1BNQQGW4RF``."""
    if prefix not in PREFIXES:
        raise ValueError(f"Unknown id prefix {prefix!r}; use one of {', '.join(PREFIXES)}.")
    return f"{prefix}_{ULID()}"


def is_valid_id(value: str, prefix: str) -> bool:
    """Return True when value is ``<prefix>_`` followed by 26 characters of [0-9A-Z]."""
    match = _SHAPE.match(value)
    return bool(match) and match.group("prefix") == prefix  # type: ignore[union-attr]
