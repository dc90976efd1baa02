"""Idempotency keys: the one format of a run's key, a step's call and its compensation.

A platform applies a key once and replays its first answer, so a key must read the same on
every attempt, runner and release; stored runs and the seed proof depend on these strings
byte for byte. Code that needs a key asks this module instead of spelling the format.
"""

from __future__ import annotations

FIRST_ATTEMPT = 1
COMPENSATE = "compensate"


def run_key(decision_id: str, attempt: int) -> str:
    """Return the key of a decision's run: ``<decision_id>-attempt-<n>``, counted from 1."""
    if attempt < FIRST_ATTEMPT:
        raise ValueError(f"A run's attempt counts from {FIRST_ATTEMPT}, not {attempt}.")
    return f"{decision_id}-attempt-{attempt}"


def step_key(run_key: str, step_id: str) -> str:
    """Return the key of a forward step's platform call: ``<run_key>:<step_id>``."""
    return f"{run_key}:{step_id}"


def compensation_key(run_key: str, step_id: str) -> str:
    """Return the key of the call undoing a step: ``<run_key>:<step_id>:compensate``."""
    return f"{step_key(run_key, step_id)}:{COMPENSATE}"


def run_calls_prefix(run_key: str) -> str:
    """Return the key prefix of every platform call of one run (and of no other attempt)."""
    return f"{run_key}:"


def step_calls_prefix(run_key: str, step_id: str) -> str:
    """Return the key prefix that hits a step's calls, for a planned fault.

    It matches the step's forward call on every attempt (they share one key). Being a
    prefix, it also matches the step's compensation, which only runs once the forward
    call succeeded, and any step whose id starts with this one's (``move_1``,
    ``move_10``). To hit only the compensation, use ``compensation_key`` as the prefix.
    """
    return step_key(run_key, step_id)
