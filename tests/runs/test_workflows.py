import pytest

from mutations.connectors import Change
from runs.retry import RetryPolicy
from runs.workflows import Step, Workflow, WorkflowDefinitionError, register, workflow_for


def _change(decision: object) -> Change:
    return Change(platform="meta", mutation_type="update_budget", payload={})


def test_step_without_compensation_or_reason_is_refused() -> None:
    workflow = Workflow(
        id="bad_workflow",
        version=1,
        decision_type="bad",
        scope=lambda d: {},
        validate_action=lambda a: {},
        steps=(Step(id="change_something", build=_change),),
    )
    with pytest.raises(WorkflowDefinitionError, match=r"change_something.*neither a compensation"):
        register(workflow)
    assert workflow_for("bad") is None


def test_seed_workflow_declares_compensation_for_every_step() -> None:
    workflow = workflow_for("rebalance_spend")
    assert workflow is not None
    assert [s.id for s in workflow.steps] == ["debit_source_channel", "credit_target_channel"]
    assert all(s.compensation is not None for s in workflow.steps)
    decision = {
        "action": {
            "source_channel": "meta",
            "target_channel": "google",
            "amount": 800,
            "scope": {"market": "all"},
        }
    }
    assert workflow.contract(decision)["compensation_declared"] is True
    assert workflow.contract(decision)["platforms"] == ["google", "meta"]


def test_backoff_is_capped_and_honours_retry_after_up_to_its_cap(settings: object) -> None:
    settings.BACKSTOP_RETRY_DELAY_SCALE = 1  # type: ignore[attr-defined]
    policy = RetryPolicy(initial_interval=1, maximum_interval=30, jitter=0, retry_after_cap=60)
    assert [policy.delay(n) for n in (1, 2, 3, 6, 10)] == [1, 2, 4, 30, 30]
    assert policy.delay(1, retry_after=45) == 45
    assert policy.delay(1, retry_after=600) == 60


def test_jitter_stays_within_its_fraction(settings: object) -> None:
    settings.BACKSTOP_RETRY_DELAY_SCALE = 1  # type: ignore[attr-defined]
    policy = RetryPolicy(initial_interval=10, maximum_interval=30, jitter=0.2)
    delays = {policy.delay(1) for _ in range(200)}
    assert all(8 <= d <= 12 for d in delays)
    assert len(delays) > 1
