"""Idempotency key formats: platforms, stored runs and the seed proof read them byte for byte."""

import pytest

from controlplane.devtools.demo import SEED_DECISION_ID
from runs.keys import FIRST_ATTEMPT, compensation_key, run_key, step_calls_prefix, step_key
from tests.conftest import load_fixture

RUN_KEY = "dec_01J1B7K9C8N3RXQK9VPYZW2QF4-attempt-1"


def test_first_run_key_is_the_seeds() -> None:
    seed = load_fixture("seed_workflow_run.json")
    assert run_key(SEED_DECISION_ID, FIRST_ATTEMPT) == seed["idempotency_key"] == RUN_KEY


def test_formats_are_the_documented_ones() -> None:
    assert run_key("dec_A", 3) == "dec_A-attempt-3"
    assert step_key(RUN_KEY, "debit_source_channel") == f"{RUN_KEY}:debit_source_channel"
    assert (
        compensation_key(RUN_KEY, "debit_source_channel")
        == f"{RUN_KEY}:debit_source_channel:compensate"
    )


def test_a_steps_prefix_hits_its_calls_and_spares_the_other_steps() -> None:
    prefix = step_calls_prefix(RUN_KEY, "credit_target_channel")
    assert step_key(RUN_KEY, "credit_target_channel").startswith(prefix)
    assert compensation_key(RUN_KEY, "credit_target_channel").startswith(prefix)
    assert not step_key(RUN_KEY, "debit_source_channel").startswith(prefix)
    assert not compensation_key(RUN_KEY, "debit_source_channel").startswith(prefix)


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="counts from 1, not 0"):
        run_key("dec_A", 0)
