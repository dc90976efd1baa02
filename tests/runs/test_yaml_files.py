"""Platforms and workflow files: 30 malformed ones refused with line and field, and the
valid ones building exactly the changes they describe."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mutations.connectors import Change
from mutations.connectors.platforms_file import parse_platforms
from mutations.yamltext import FileInvalid
from runs.workflows.templates import TemplateRenderError
from runs.workflows.yaml_workflows import load_workflows_dir, parse_workflow

ROOT = Path(__file__).resolve().parents[2]
GRANT = (ROOT / "controlplane/demo_data/workflows/grant_access.yaml").read_text()
DECISION = json.loads((ROOT / "controlplane/demo_data/access/grant_access.json").read_text())
PLATFORMS = frozenset({"iam", "ticketing", "billing", "meta", "google"})
ENV = {"IAM_TOKEN": "t", "IAM_KEY": "k"}
HTTP_X = "platforms:\n  iam:\n    kind: http\n    base_url: http://x\n"

GOOD_PLATFORM = """platforms:
  iam:
    kind: http
    base_url: http://127.0.0.1:9101/
    bearer_token_env: IAM_TOKEN
"""

MALFORMED_PLATFORMS = [
    ("platforms: [a, b\n", 2, "yaml", "expected ',' or ']'"),
    ("- iam\n", 1, "platforms", "must be a mapping"),
    ("platforms: {}\n", 1, "platforms", "required mapping"),
    ("platforms:\n  iam: {kind: http, base_url: http://x}\nextra: 1\n", 3, "extra", "unknown key"),
    ("platforms:\n  IAM: {kind: http, base_url: http://x}\n", 2, "platforms.IAM", "lower-case"),
    ("platforms:\n  meta: {kind: http, base_url: http://x}\n", 2, "platforms.meta", "built-in"),
    (
        "platforms:\n  iam:\n    kind: grpc\n    base_url: http://x\n",
        3,
        "platforms.iam.kind",
        "http",
    ),
    ("platforms:\n  iam:\n    kind: http\n", 3, "platforms.iam.base_url", "required"),
    (
        "platforms:\n  iam:\n    kind: http\n    base_url: ftp://x\n",
        4,
        "platforms.iam.base_url",
        "http:// or https://",
    ),
    (
        "platforms:\n  iam:\n    kind: http\n    base_url: http://x/?a=1\n",
        4,
        "platforms.iam.base_url",
        "query",
    ),
    (
        HTTP_X + "    bearer_token_env: lower\n",
        5,
        "platforms.iam.bearer_token_env",
        "must name an environment variable",
    ),
    (
        HTTP_X + "    signing_secret_env: NOPE\n",
        5,
        "platforms.iam.signing_secret_env",
        "environment variable NOPE is not set",
    ),
    (
        HTTP_X + "    timeout_seconds: 0\n",
        5,
        "platforms.iam.timeout_seconds",
        "more than 0",
    ),
    (
        HTTP_X + "    max_in_flight: 2.5\n",
        5,
        "platforms.iam.max_in_flight",
        "whole number",
    ),
    (
        HTTP_X + "    sandbox: 'yes'\n",
        5,
        "platforms.iam.sandbox",
        "true or false",
    ),
    (
        HTTP_X + "    requests_per_second: fast\n",
        5,
        "platforms.iam.requests_per_second",
        "must be a number",
    ),
    (
        HTTP_X + "    retries: 3\n",
        5,
        "platforms.iam.retries",
        "unknown key",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "field", "phrase"),
    MALFORMED_PLATFORMS,
    ids=[f"platforms-{n}" for n in range(len(MALFORMED_PLATFORMS))],
)
def test_malformed_platforms_file_is_refused_with_line_and_field(
    text: str, line: int, field: str, phrase: str
) -> None:
    with pytest.raises(FileInvalid) as refused:
        parse_platforms(text, environ=ENV, reserved=frozenset({"meta", "google"}))
    assert (line, field) in [(p.line, p.field) for p in refused.value.problems], str(refused.value)
    assert phrase in str(refused.value)


def broken(old: str, new: str) -> str:
    assert old in GRANT, old
    return GRANT.replace(old, new, 1)


def line_of(text: str, fragment: str) -> int:
    return text[: text.index(fragment)].count("\n") + 1


MALFORMED_WORKFLOWS: list[tuple[str, str, str, str]] = [
    # (text, the fragment on the line reported, field, phrase)
    (broken("id: grant_access", "id: Grant-Access"), "id: Grant-Access", "id", "lower-case"),
    (broken("version: 1", "version: one"), "version: one", "version", "whole number"),
    (broken("decision_type: grant_access\n", ""), "id: grant_access", "decision_type", "required"),
    (broken("topic: access.grant", "topics: access.grant"), "topics:", "topics", "unknown key"),
    (
        broken("  user: {type: string}", "  user: {type: text}"),
        "user:",
        "action.user.type",
        "one of",
    ),
    (
        broken("  user: {type: string}", "  user: {type: string, required: maybe}"),
        "user:",
        "action.user.required",
        "true or false",
    ),
    (
        broken("    platform: billing", "    platform: biling"),
        "platform: biling",
        "steps[2].platform",
        "unknown platform 'biling'",
    ),
    (
        broken("  - id: open_access_ticket", "  - id: add_to_iam_group"),
        "  - id: add_to_iam_group\n    platform: ticketing",
        "steps[1].id",
        "repeats steps[0]",
    ),
    (
        broken("    mutation_type: create\n", ""),
        "  - id: open_access_ticket",
        "steps[1].mutation_type",
        "required",
    ),
    (
        broken(
            '    target: {group: "{{ action.group }}"}\n    payload: {members',
            "    payload: {members",
        ),
        "  - id: add_to_iam_group",
        "steps[0].target",
        "required",
    ),
    (
        broken(
            "    compensation:\n      id: release_billing_seat",
            "    no_compensation:\n      id: release_billing_seat",
        ),
        "no_compensation:",
        "steps[2].no_compensation",
        "unknown key",
    ),
    (
        broken("payload: {seats_available: -1}", 'payload: {seats_available: "{{ action.seats"}'),
        'payload: {seats_available: "{{',
        "steps[2].payload",
        "template syntax",
    ),
    (
        broken('payload: {members: "{{ action.user }}"}', 'payload: {members: "{{ user }}"}'),
        'payload: {members: "{{ user }}"}',
        "steps[0].payload",
        "unknown name user",
    ),
    (
        broken(
            '    target: {group: "{{ action.group }}"}\n    payload',
            '    target: {group: "{{ forward.target }}"}\n    payload',
        ),
        'target: {group: "{{ forward.target }}"}',
        "steps[0].target",
        "unknown name forward",
    ),
    (
        broken(
            "    retry: {max_attempts: 3, initial_interval: 1}\n    timeout: 5",
            "    retry: {max_attempts: 0, initial_interval: 1}\n    timeout: 5",
        ),
        "retry: {max_attempts: 0",
        "steps[0].retry.max_attempts",
        "too small",
    ),
    (
        broken("    timeout: 5", "    timeout: soon"),
        "timeout: soon",
        "steps[0].timeout",
        "more than 0",
    ),
    (
        broken(
            "    platform: ticketing\n", "    platform: ticketing\n    reversibility: undoable\n"
        ),
        "reversibility: undoable",
        "steps[1].reversibility",
        "one of reversible",
    ),
    (
        broken(
            "    platform: ticketing\n",
            "    platform: ticketing\n    reversibility: irreversible\n",
        ),
        "    compensation:\n      id: delete_access_ticket",
        "steps[1].compensation",
        "irreversible",
    ),
    (
        broken("    timeout: 5\n", "    timeout: 5\n    request: {method: FETCH, path: /x}\n"),
        "request: {method: FETCH",
        "steps[0].request.method",
        "one of GET",
    ),
    (
        broken("    timeout: 5\n", "    timeout: 5\n    request: {method: POST, path: x}\n"),
        "request: {method: POST, path: x}",
        "steps[0].request.path",
        'starting with "/"',
    ),
    (
        broken("scope:\n  iam:", "scope:\n  crm: {id: 1}\n  iam:"),
        "  crm: {id: 1}",
        "scope.crm",
        "unknown platform 'crm'",
    ),
    (
        broken("steps:\n", "steps: []\nold_steps:\n"),
        "steps: []",
        "steps",
        "one or more steps",
    ),
]


def test_a_step_without_compensation_or_reason_is_refused_naming_it() -> None:
    text = GRANT[: GRANT.index("    compensation:\n      id: release_billing_seat")]
    with pytest.raises(FileInvalid) as refused:
        parse_workflow(text, source="grant_access.yaml", platforms=PLATFORMS)
    [problem] = refused.value.problems
    assert (problem.line, problem.field) == (
        line_of(text, "  - id: reserve_billing_seat"),
        "steps[2]",
    )
    assert "'reserve_billing_seat' declares neither a compensation nor a no_rollback_reason" in str(
        refused.value
    )
    assert str(refused.value).startswith("grant_access.yaml: line ")


@pytest.mark.parametrize(
    ("text", "fragment", "field", "phrase"),
    MALFORMED_WORKFLOWS,
    ids=[f"workflow-{n}" for n in range(len(MALFORMED_WORKFLOWS))],
)
def test_malformed_workflow_file_is_refused_with_line_and_field(
    text: str, fragment: str, field: str, phrase: str
) -> None:
    with pytest.raises(FileInvalid) as refused:
        parse_workflow(text, source="grant_access.yaml", platforms=PLATFORMS)
    found = [(p.line, p.field) for p in refused.value.problems]
    assert (line_of(text, fragment), field) in found, str(refused.value)
    assert phrase in str(refused.value)


def test_thirty_malformed_files_are_covered() -> None:
    assert len(MALFORMED_PLATFORMS) + len(MALFORMED_WORKFLOWS) + 1 >= 30


def test_valid_platforms_file_gets_defaults() -> None:
    [iam] = parse_platforms(GOOD_PLATFORM, environ=ENV)
    assert iam.base_url == "http://127.0.0.1:9101"
    assert (iam.timeout_seconds, iam.max_in_flight, iam.requests_per_second) == (10.0, 8, None)
    assert iam.sandbox is False and iam.bearer_token_env == "IAM_TOKEN"


def test_yaml_workflow_builds_its_changes_and_their_inverses() -> None:
    workflow = parse_workflow(GRANT, source="grant_access.yaml", platforms=PLATFORMS)
    steps = [step.build(DECISION) for step in workflow.steps]
    assert steps == [
        Change("iam", "add", {"members": "ana.ruiz"}, {"group": "payments-oncall"}),
        Change(
            "ticketing",
            "create",
            {"summary": "Access to payments-oncall for ana.ruiz", "status": "open"},
            {"ticket": f"ACCESS-{DECISION['id']}"},
        ),
        Change("billing", "increment", {"seats_available": -1}, {"account": "cc-payments"}),
    ]
    undo = [
        step.compensation.inverse(DECISION, change)
        for step, change in zip(workflow.steps, steps, strict=True)
        if step.compensation is not None
    ]
    assert undo[0] == Change("iam", "remove", {"members": "ana.ruiz"}, {"group": "payments-oncall"})
    assert undo[1] == Change("ticketing", "delete", {}, {"ticket": f"ACCESS-{DECISION['id']}"})
    assert undo[2].payload == {"seats_available": 1}  # an integer stays an integer
    assert workflow.contract(DECISION)["platforms"] == ["billing", "iam", "ticketing"]


def test_declared_action_fields_are_checked() -> None:
    workflow = parse_workflow(GRANT, source="g.yaml", platforms=PLATFORMS)
    assert workflow.validate_action(DECISION["action"]) == {}
    assert workflow.validate_action({"user": 7, "group": " "}) == {
        "action.user": "must be a string; got 7",
        "action.group": "must not be empty",
        "action.cost_center": "required (string)",
    }


def test_templates_cannot_reach_outside_their_data() -> None:
    text = broken('summary: "Access to', 'summary: "{{ action.user.__class__.__mro__ }} Access to')
    workflow = parse_workflow(text, source="g.yaml", platforms=PLATFORMS)
    with pytest.raises(TemplateRenderError, match="unsafe"):
        workflow.steps[1].build(DECISION)


def test_request_templates_keep_native_types(tmp_path: Path) -> None:
    text = broken(
        "    timeout: 5\n",
        '    timeout: 5\n    request: {method: put, path: "/v1/records/{{ action.user }}", '
        'json: {seats: "{{ decision.confidence }}"}}\n',
    )
    (tmp_path / "grant.yaml").write_text(text)
    [workflow] = load_workflows_dir(tmp_path, platforms=PLATFORMS)
    request: Any = workflow.steps[0].build(DECISION).request
    assert request == {"method": "put", "path": "/v1/records/ana.ruiz", "json": {"seats": 0.88}}
