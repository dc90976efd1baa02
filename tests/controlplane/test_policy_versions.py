"""Policy versions: the seed-001 rules, 50 malformed texts refused, dry run, activation."""

from pathlib import Path
from typing import Any

import pytest
from django.core.management.base import CommandError
from django.test import Client

from controlplane.models import PolicyActivation, PolicyVersion, Role, ServiceAccount, Workspace
from controlplane.policy.rules import PolicyInvalid, parse_policy
from controlplane.policy.versions import activate_policy
from tests.conftest import command, rebalance, submit

pytestmark = pytest.mark.django_db

SEED_001_POLICY = """\
version: v1
rules:
- id: require-compensation-for-prod-writes
  when:
    env: production
    side_effect: true
    compensation_declared: false
  decision: require_human
- id: deny-irreversible-delete-without-approval
  when:
    topic: infra.delete
    rollback_supported: false
    approval_present: false
  decision: deny
"""


def test_seed_001_rules_behave_as_written() -> None:
    policy = parse_policy(SEED_001_POLICY)
    write = {"env": "production", "side_effect": True, "compensation_declared": False}
    delete = {"topic": "infra.delete", "rollback_supported": False, "approval_present": False}

    assert policy.evaluate(write).outcome == "require_human"
    assert policy.evaluate(write).deciding_rule_ids == ["require-compensation-for-prod-writes"]
    assert policy.evaluate(delete).outcome == "deny"
    assert policy.evaluate({**delete, "approval_present": True}).outcome == "require_human"


def test_irreversible_step_is_held_unless_a_rule_allows_it_explicitly() -> None:
    loose = parse_policy(
        "version: a\nrules:\n  - {id: all, when: {side_effect: true}, decision: allow}\n"
    )
    explicit = parse_policy(
        "version: b\nrules:\n"
        "  - {id: deletes-ok, when: {reversibility: irreversible}, decision: allow}\n"
    )
    inputs = {"side_effect": True, "rollback_supported": False, "reversibility": "irreversible"}

    held = loose.evaluate(inputs)
    assert (held.outcome, held.deciding_rule_ids) == (
        "require_human",
        ["irreversible-needs-explicit-allow"],
    )
    assert explicit.evaluate(inputs).outcome == "allow"


HEAD = "version: v\nrules:\n  - id: a\n"


def _malformed() -> list[tuple[str, str]]:
    """Fifty broken policies, each with the field its error must name."""
    ok_rule = "  - id: r{n}\n    when: {{type: rebalance_spend}}\n    decision: allow\n"
    cases = [
        ("version: v\nrules: [\n", "yaml"),
        ("version: v\nrules:\n  - id: a\n   when: x\n", "yaml"),
        ("version: 'v\n", "yaml"),
        ("version: v\nrules:\n\t- id: a\n", "yaml"),
        ("version: v\nversion: w\n", "yaml"),
        ("- just\n- a list\n", "policy"),
        ("rules: []\n", "version"),
        ("version: ''\n", "version"),
        ("version: v\ndefault: maybe\n", "default"),
        ("version: v\nrules: everything\n", "rules"),
        ("version: v\nrules:\n  - just a string\n", "rules[0]"),
    ]
    for key in ("rulez", "defaults", "owner", "extends", "name"):
        cases.append((f"version: v\n{key}: x\n", key))
    for key in ("whenever", "unless", "priority", "then", "effect"):
        cases.append(
            (
                HEAD + f"    when: {{type: x}}\n    decision: deny\n    {key}: 1\n",
                f"rules[0].{key}",
            )
        )
    for key in ("colour", "amount", "action", "action.", "approval", "sideeffect", "workflow"):
        cases.append(
            (
                f"version: v\nrules:\n  - id: a\n    when: {{{key}: 1}}\n    decision: deny\n",
                f"rules[0].when.{key}",
            )
        )
    for op, value in (
        ("gt", "high"),
        ("gte", "[1]"),
        ("lt", "'3'"),
        ("lte", "true"),
        ("in", "x"),
        ("not_in", "3"),
        ("exists", "maybe"),
        ("exists", "1"),
    ):
        cases.append(
            (
                HEAD + f"    when:\n      confidence: {{{op}: {value}}}\n    decision: deny\n",
                f"rules[0].when.confidence.{op}",
            )
        )
    for op in ("like", "between", "eq", "regex"):
        cases.append(
            (
                HEAD + f"    when:\n      type: {{{op}: x}}\n    decision: deny\n",
                f"rules[0].when.type.{op}",
            )
        )
    for n in range(3):
        rules = ok_rule.format(n=1) * (n + 2)
        cases.append((f"version: v\nrules:\n{rules}", "rules[1].id"))
    for decision in ("allw", "permit", "hold", "DENY", "true"):
        cases.append(
            (
                f"version: v\nrules:\n  - id: a\n    when: {{type: x}}\n    decision: {decision}\n",
                "rules[0].decision",
            )
        )
    cases.append(("version: v\nrules:\n  - id: a\n    when: {type: x}\n", "rules[0].decision"))
    cases.append(("version: v\nrules:\n  - id: a\n    decision: deny\n", "rules[0].when"))
    cases.append(("version: v\nrules:\n  - when: {type: x}\n    decision: deny\n", "rules[0].id"))
    cases.append(
        (
            "version: v\nrules:\n  - id: a\n    when: {type: [a, b]}\n    decision: deny\n",
            "rules[0].when.type",
        )
    )
    return cases


MALFORMED = _malformed()


def test_there_are_fifty_malformed_policies() -> None:
    assert len(MALFORMED) >= 50


@pytest.mark.parametrize(("text", "field"), MALFORMED)
def test_malformed_policy_is_refused_naming_line_and_field(
    workspace: Workspace, text: str, field: str
) -> None:
    active = PolicyVersion.objects.get(workspace=workspace, is_active=True)
    with pytest.raises(PolicyInvalid) as refused:
        activate_policy(workspace=workspace, text=text, activated_by="test")
    fields = [p.field for p in refused.value.problems]
    assert field in fields, str(refused.value)
    assert all(p.line for p in refused.value.problems), str(refused.value)
    assert PolicyVersion.objects.get(workspace=workspace, is_active=True) == active
    assert PolicyVersion.objects.filter(workspace=workspace).count() == 1


def test_activation_keeps_one_active_version_and_a_history(workspace: Workspace) -> None:
    text = "version: v2\ndefault: deny\nrules: []\n"
    activate_policy(workspace=workspace, text=text, activated_by="user:admin")
    activate_policy(workspace=workspace, text=text, activated_by="user:admin")  # no change

    active = PolicyVersion.objects.get(workspace=workspace, is_active=True)
    assert active.version == "v2"
    history = list(
        PolicyActivation.objects.filter(workspace=workspace).values_list(
            "policy__version", "activated_by"
        )
    )
    assert history == [("v2", "user:admin"), ("budget_policy_v1", "test")]
    with pytest.raises(PolicyInvalid, match="different text"):
        activate_policy(workspace=workspace, text=text + "# changed\n", activated_by="x")


def test_policies_page_validates_dry_runs_and_activates(
    agent: ServiceAccount, client: Client, member: Any
) -> None:
    for confidence in (0.74, 0.5, 0.9):
        submit(agent, rebalance(confidence=confidence))
    client.force_login(member("boss", Role.ADMIN))

    broken = client.post(
        "/policies/",
        {
            "text": "version: v\nrules:\n  - id: a\n    when: {colour: red}\n    decision: allow\n",
            "action": "activate",
        },
    )
    assert broken.status_code == 400
    assert "line 4" in broken.content.decode() and "rules[0].when.colour" in broken.content.decode()
    assert PolicyVersion.objects.get(is_active=True).version == "budget_policy_v1"

    strict = (
        "version: strict\ndefault: deny\nrules:\n"
        "  - {id: only-sure, when: {confidence: {gte: 0.8}}, decision: allow}\n"
    )
    dry = client.post("/policies/", {"text": strict, "action": "dry_run"}).content.decode()
    assert "would have decided differently on 2 of the last 3 decisions" in dry

    client.post("/policies/", {"text": strict, "action": "activate"})
    assert PolicyVersion.objects.get(is_active=True).version == "strict"


def test_only_admins_change_policies(client: Client, member: Any, workspace: Workspace) -> None:
    client.force_login(member("ops", Role.OPERATOR))
    text = "version: v9\nrules: []\n"
    assert client.post("/policies/", {"text": text, "action": "activate"}).status_code == 403
    assert PolicyVersion.objects.get(is_active=True).version == "budget_policy_v1"


def test_policy_commands(workspace: Workspace, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("version: v3\nrules:\n  - {id: a, when: {type: x}, decision: deny}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: v4\nrules:\n  - {id: a, when: {type: x}, decision: nope}\n")

    assert "valid policy v3 with 1 rule" in command("policy", "validate", str(good))
    with pytest.raises(CommandError, match=r"line 3, rules\[0\].decision"):
        command("policy", "activate", str(bad), org="acme")
    command("policy", "activate", str(good), org="acme", by="cli-test")
    assert PolicyVersion.objects.get(is_active=True).version == "v3"
