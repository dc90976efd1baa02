"""A YAML step's retry policy and durations, checked like the rest of the file."""

from __future__ import annotations

from math import inf, isfinite
from typing import Any

from mutations.yamltext import LineMapping, Problem, unknown_keys
from runs.retry import RetryPolicy

RETRY_MINIMUMS = {  # the smallest value each retry setting accepts
    "max_attempts": 1,
    "initial_interval": 0,
    "backoff_coefficient": 1,
    "maximum_interval": 0,
    "jitter": 0,
    "retry_after_cap": 0,
}


def _bad(problems: list[Problem], mapping: LineMapping, key: str, field: str, message: str) -> None:
    problems.append(Problem(mapping.line_of(key), f"{field}.{key}" if field else key, message))


def parse_retry(raw: LineMapping, field: str, problems: list[Problem]) -> RetryPolicy:
    """Return a step's ``retry`` settings; add a problem for each one out of range."""
    spec, field = raw.get("retry", LineMapping()), f"{field}.retry"
    if not isinstance(spec, LineMapping):
        _bad(problems, raw, "retry", field.removesuffix(".retry"), "a mapping of retry settings")
        return RetryPolicy()
    unknown_keys(spec, frozenset(RETRY_MINIMUMS), field, problems)
    values: dict[str, Any] = {}
    for key, value in spec.items():
        if key not in RETRY_MINIMUMS:
            continue
        whole = key == "max_attempts"
        if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
            kind = "a whole number" if whole else "a number"
            _bad(problems, spec, key, field, f"must be {kind}; got {value!r}")
        elif not isfinite(value):
            _bad(problems, spec, key, field, f"must be a finite number; got {value!r}")
        elif value < RETRY_MINIMUMS[key] or (key == "jitter" and value > 1):
            limit = "between 0 and 1" if key == "jitter" else f"at least {RETRY_MINIMUMS[key]}"
            _bad(problems, spec, key, field, f"must be {limit}; got {value!r}")
        else:
            values[key] = value
    default = RetryPolicy()
    initial = values.get("initial_interval", default.initial_interval)
    maximum = values.get("maximum_interval", default.maximum_interval)
    if initial > maximum:
        key = "initial_interval" if "initial_interval" in spec else "maximum_interval"
        message = f"initial_interval ({initial:g}) is more than maximum_interval ({maximum:g})"
        _bad(problems, spec, key, field, message)
        return default
    return RetryPolicy(**values)


def parse_seconds(
    raw: LineMapping, key: str, field: str, default: float, problems: list[Problem]
) -> float:
    """Return a duration in seconds (``timeout``, ``window``), more than 0."""
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < inf:
        _bad(problems, raw, key, field, f"seconds, more than 0; got {value!r}")
        return default
    return float(value)
