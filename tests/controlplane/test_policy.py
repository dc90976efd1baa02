from typing import Any

import pytest

from controlplane.intake.submit import POLICY_DIR
from controlplane.policy.rules import PolicyInvalid, parse_policy
from tests.conftest import load_fixture


def seed_inputs(**changes: Any) -> dict[str, Any]:
    inputs = {
        **load_fixture("seed_decision.json"),
        "env": "development",
        "approval_present": False,
        "side_effect": True,
        "compensation_declared": True,
        "rollback_supported": True,
    }
    inputs.update(changes)
    return inputs


@pytest.fixture
def budget_policy() -> Any:
    return parse_policy((POLICY_DIR / "budget_policy_v1.yaml").read_text())


def test_seed_decision_is_allowed_by_the_market_rebalance_rule(budget_policy: Any) -> None:
    result = budget_policy.evaluate(seed_inputs())
    assert result.outcome == "allow"
    assert result.matched_rule_ids == ["allow-market-rebalance"]


def test_most_restrictive_matching_rule_wins(budget_policy: Any) -> None:
    inputs = seed_inputs(action={**seed_inputs()["action"], "amount": 6000})
    result = budget_policy.evaluate(inputs)
    assert result.outcome == "require_human"
    assert result.matched_rule_ids == ["large-shift-needs-human", "allow-market-rebalance"]
    assert result.deciding_rule_ids == ["large-shift-needs-human"]


def test_low_confidence_is_denied(budget_policy: Any) -> None:
    result = budget_policy.evaluate(seed_inputs(confidence=0.2))
    assert (result.outcome, result.deciding_rule_ids) == ("deny", ["deny-low-confidence"])


def test_no_matching_rule_falls_back_to_the_default(budget_policy: Any) -> None:
    result = budget_policy.evaluate(seed_inputs(confidence=0.5))
    assert (result.outcome, result.matched_rule_ids) == ("require_human", [])


def test_missing_default_fails_closed() -> None:
    policy = parse_policy("version: v\nrules:\n  - {id: a, when: {type: other}, decision: allow}\n")
    assert policy.evaluate(seed_inputs()).outcome == "require_human"


def test_not_auto_executable_is_always_held(budget_policy: Any) -> None:
    result = budget_policy.evaluate(seed_inputs(auto_executable=False))
    assert result.outcome == "require_human"
    assert result.deciding_rule_ids == ["auto-executable-false"]


def test_production_write_without_compensation_is_held(budget_policy: Any) -> None:
    inputs = seed_inputs(env="production", compensation_declared=False)
    assert budget_policy.evaluate(inputs).outcome == "require_human"


def test_operators() -> None:
    policy = parse_policy(
        "version: v\ndefault: deny\nrules:\n"
        "  - id: r\n    when:\n"
        "      priority: { in: [medium, high] }\n"
        "      action.currency: { not_in: [EUR] }\n"
        "      action.reason: { exists: true }\n"
        "      action.missing: { exists: false }\n"
        "      confidence: { gt: 0.7, lte: 0.74 }\n"
        "    decision: allow\n"
    )
    assert policy.evaluate(seed_inputs()).outcome == "allow"
    assert policy.evaluate(seed_inputs(priority="low")).outcome == "deny"
    assert policy.evaluate(seed_inputs(confidence="high")).outcome == "deny"


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("version: v\nrules: [\n", 3, "yaml"),
        ("version: v\nrulez: []\n", 2, "rulez"),
        ("rules: []\n", 1, "version"),
        ("version: v\ndefault: maybe\n", 2, "default"),
        (
            "version: v\nrules:\n  - id: a\n    when: {type: x}\n    decision: allw\n",
            5,
            "rules[0].decision",
        ),
        (
            "version: v\nrules:\n  - id: a\n    when: {colour: red}\n    decision: allow\n",
            4,
            "rules[0].when.colour",
        ),
        (
            "version: v\nrules:\n  - id: a\n    when:\n      confidence: {gt: high}\n"
            "    decision: deny\n",
            5,
            "rules[0].when.confidence.gt",
        ),
        (
            "version: v\nrules:\n  - id: a\n    when:\n      type: {in: x}\n    decision: deny\n",
            5,
            "rules[0].when.type.in",
        ),
        (
            "version: v\nrules:\n  - id: a\n    when:\n      type: {like: x}\n    decision: deny\n",
            5,
            "rules[0].when.type.like",
        ),
        (
            "version: v\nrules:\n  - {id: a, when: {type: x}, decision: deny}\n"
            "  - {id: a, when: {type: y}, decision: deny}\n",
            4,
            "rules[1].id",
        ),
        (
            "version: v\nrules:\n  - id: a\n    when: {type: x}\n    decision: deny\n"
            "    unless: {}\n",
            6,
            "rules[0].unless",
        ),
        ("version: v\nversion: w\n", 2, "yaml"),
    ],
)
def test_invalid_policies_name_the_line_and_field(text: str, line: int, field: str) -> None:
    with pytest.raises(PolicyInvalid) as caught:
        parse_policy(text)
    problem = caught.value.problems[0]
    assert (problem.line, problem.field) == (line, field), str(caught.value)
