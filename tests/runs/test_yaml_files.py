"""The YAML files teams write: malformed platforms and workflow files are refused with the
line and field to change; valid ones build exactly the changes they describe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import SecurityError

from mutations.connectors import Change
from mutations.connectors.platforms_file import HttpPlatform, load_platforms_file, parse_platforms
from mutations.yamltext import FileInvalid, Problem, load_yaml
from runs.retry import RetryPolicy
from runs.workflows.registry import Reversibility
from runs.workflows.templates import ENVIRONMENT, TemplateRenderError, compile_tree
from runs.workflows.yaml_workflows import load_workflows_dir, parse_workflow

PLATFORMS = frozenset({"iam", "ticketing", "billing", "meta", "google"})
ENV = {"IAM_TOKEN": "t0ken", "IAM_SIGNING_KEY": "k3y"}
RESERVED = frozenset({"meta", "google"})

GRANT = """\
# Give a person a role in IAM, open the access ticket, reserve a billing seat.
id: grant_access
version: 1
decision_type: grant_access
topic: access.grant
description: Give a person a role in IAM, open the access ticket, reserve a billing seat.
action:
  user: {type: string}
  role: {type: string, enum: [viewer, editor, admin]}
  account: {type: string}
  seats: {type: integer, required: false}
scope:
  iam: {group: "{{ action.role }}"}
  ticketing: {ticket: "ACCESS-{{ id }}"}
  billing: {account: "{{ action.account }}"}
steps:
  - id: grant_iam_role
    platform: iam
    mutation_type: add
    target: {group: "{{ action.role }}"}
    payload: {members: "{{ action.user }}"}
    reversibility: reversible
    retry: {max_attempts: 3, initial_interval: 1, maximum_interval: 30, retry_after_cap: 60}
    timeout: 5
    request:
      method: post
      path: "/groups/{{ action.role }}/members"
      json: {user: "{{ action.user }}"}
    compensation:
      id: revoke_iam_role
      mutation_type: remove
      target: "{{ forward.target }}"
      payload: {members: "{{ action.user }}"}
      request:
        method: DELETE
        path: "/groups/{{ forward.target.group }}/members/{{ action.user }}"
      window: 60
  - id: open_access_ticket
    platform: ticketing
    mutation_type: create
    target: {ticket: "ACCESS-{{ id }}"}
    payload:
      summary: "{{ action.user }} gets {{ action.role }}"
      confidence: "{{ decision.confidence }}"
    compensation:
      id: delete_access_ticket
      mutation_type: delete
      target: "{{ forward.target }}"
  - id: reserve_billing_seat
    platform: billing
    mutation_type: increment
    target: {account: "{{ action.account }}"}
    payload: {seats: "{{ action.seats | default(1) }}"}
    compensation:
      id: release_billing_seat
      mutation_type: increment
      target: "{{ forward.target }}"
      payload: {seats: "{{ -forward.payload.seats }}"}
"""

DECISION: dict[str, Any] = {
    "id": "dec_01J1B9GRANTACCESS0NCALL005",
    "type": "grant_access",
    "confidence": 0.88,
    "action": {"type": "grant_access", "user": "ana.ruiz", "role": "editor", "account": "cc-7"},
}


def broken(old: str, new: str, text: str = GRANT) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def line_of(text: str, fragment: str) -> int:
    return text[: text.index(fragment)].count("\n") + 1


def assert_refused(refused: FileInvalid, line: int, field: str, phrase: str) -> None:
    located = [p for p in refused.problems if (p.line, p.field) == (line, field)]
    assert located, f"no problem at line {line}, {field}: {refused}"
    assert any(phrase in p.message for p in located), str(refused)


# ---- platforms file ----------------------------------------------------------------------

HTTP = "platforms:\n  iam:\n    kind: http\n    base_url: http://iam.internal\n"

MALFORMED_PLATFORMS = [
    # (text, line, field, phrase)
    ("platforms: [a, b\n", 2, "yaml", "expected ',' or ']'"),
    ("- iam\n", 1, "platforms", "must be a mapping"),
    ("platforms: {}\n", 1, "platforms", "required mapping of name: platform"),
    (HTTP + "extra: 1\n", 5, "extra", "unknown key; use platforms"),
    ("platforms:\n  IAM: {kind: http, base_url: http://x}\n", 2, "platforms.IAM", "lower-case"),
    ("platforms:\n  meta: {kind: http, base_url: http://x}\n", 2, "platforms.meta", "built-in"),
    ("platforms:\n  iam: http://x\n", 2, "platforms.iam", "must be a mapping"),
    ("platforms:\n  iam:\n    base_url: http://x\n", 2, "platforms.iam.kind", "required"),
    (HTTP.replace("kind: http", "kind: grpc"), 3, "platforms.iam.kind", "one of http"),
    ("platforms:\n  iam:\n    kind: http\n", 2, "platforms.iam.base_url", "required"),
    (HTTP.replace("http://iam", "ftp://iam"), 4, "platforms.iam.base_url", "http:// or https://"),
    (HTTP.replace("internal", "internal/?a=1"), 4, "platforms.iam.base_url", "query"),
    (HTTP.replace("//iam", "//u:pw@iam"), 4, "platforms.iam.base_url", "credentials"),
    (HTTP.replace("internal", "internal:99999"), 4, "platforms.iam.base_url", "not a URL"),
    (HTTP + "    bearer_token_env: iam_token\n", 5, "platforms.iam.bearer_token_env", "must name"),
    (
        HTTP + "    signing_secret_env: NOPE_KEY\n",
        5,
        "platforms.iam.signing_secret_env",
        "environment variable NOPE_KEY is not set",
    ),
    (HTTP + "    timeout_seconds: 0\n", 5, "platforms.iam.timeout_seconds", "more than 0"),
    (HTTP + "    timeout_seconds: 301\n", 5, "platforms.iam.timeout_seconds", "at most 300"),
    (HTTP + "    timeout_seconds: true\n", 5, "platforms.iam.timeout_seconds", "a number"),
    (HTTP + "    max_in_flight: 2.5\n", 5, "platforms.iam.max_in_flight", "whole number"),
    (HTTP + "    max_in_flight: 0\n", 5, "platforms.iam.max_in_flight", "between 1 and 1000"),
    (HTTP + "    requests_per_second: .nan\n", 5, "platforms.iam.requests_per_second", "number"),
    (HTTP + "    sandbox: 'yes'\n", 5, "platforms.iam.sandbox", "true or false"),
    (HTTP + "    api_name: iam api\n", 5, "platforms.iam.api_name", "iam_api"),
    (HTTP + "    retries: 3\n", 5, "platforms.iam.retries", "unknown key; use api_name"),
    (HTTP + "    kind: http\n", 5, "yaml", "'kind' appears twice (first on line 3)"),
]


@pytest.mark.parametrize(("text", "line", "field", "phrase"), MALFORMED_PLATFORMS)
def test_malformed_platforms_file_is_refused_with_line_and_field(
    text: str, line: int, field: str, phrase: str
) -> None:
    with pytest.raises(FileInvalid) as refused:
        parse_platforms(text, source="platforms.yaml", environ=ENV, reserved=RESERVED)
    assert_refused(refused.value, line, field, phrase)
    assert str(refused.value).startswith("platforms.yaml: ")


def test_platforms_file_collects_every_problem_sorted_by_line() -> None:
    text = HTTP + "    timeout_seconds: -1\n    sandbox: 1\n  crm:\n    kind: soap\n"
    with pytest.raises(FileInvalid) as refused:
        parse_platforms(text, environ=ENV)
    assert [(p.line, p.field) for p in refused.value.problems] == [
        (5, "platforms.iam.timeout_seconds"),
        (6, "platforms.iam.sandbox"),
        (7, "platforms.crm.base_url"),
        (8, "platforms.crm.kind"),
    ]


def test_valid_platforms_file_gets_defaults_and_reads_secrets_when_used(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    text = HTTP.replace("internal", "internal/") + "    bearer_token_env: IAM_TOKEN\n"
    text += "  billing:\n    kind: http\n    base_url: https://billing.internal:8443/v2\n"
    text += "    signing_secret_env: IAM_SIGNING_KEY\n    requests_per_second: 20\n"
    text += "    max_in_flight: 2\n    sandbox: true\n    api_name: ledger\n"
    iam, billing = parse_platforms(text, environ=ENV)
    assert iam == HttpPlatform(
        name="iam",
        base_url="http://iam.internal",
        bearer_token_env="IAM_TOKEN",
        timeout_seconds=10.0,
        max_in_flight=8,
        requests_per_second=None,
        sandbox=False,
        api_name="iam_api",
    )
    assert (billing.base_url, billing.requests_per_second, billing.max_in_flight) == (
        "https://billing.internal:8443/v2",
        20.0,
        2,
    )
    assert (billing.sandbox, billing.api_name, billing.bearer_token()) == (True, "ledger", "")
    monkeypatch.setenv("IAM_TOKEN", "rotated")
    assert iam.bearer_token() == "rotated"


def test_a_missing_secret_names_the_variable_never_a_value() -> None:
    with pytest.raises(FileInvalid) as refused:
        parse_platforms(HTTP + "    bearer_token_env: IAM_TOKEN\n", environ={"IAM_TOKEN": ""})
    assert str(refused.value) == (
        "platforms file: line 5, platforms.iam.bearer_token_env: "
        "environment variable IAM_TOKEN is not set; the secret is read from it"
    )


def test_platforms_file_that_cannot_be_read_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(FileInvalid, match=r"missing\.yaml: file: cannot be read"):
        load_platforms_file(tmp_path / "missing.yaml")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe")
    with pytest.raises(FileInvalid, match=r"binary\.yaml: file: cannot be read: .*UTF-8"):
        load_platforms_file(tmp_path / "binary.yaml")


# ---- workflow files ----------------------------------------------------------------------

MALFORMED_WORKFLOWS: list[tuple[str, str, str, str]] = [
    # (text, a fragment of the line reported, field, phrase)
    ("- grant_access\n", "- grant_access", "workflow", "must be a mapping"),
    (broken("  - id: open", "  -id: open"), "  -id: open", "yaml", "expected <block end>"),
    (
        broken("    timeout: 5\n", "    timeout: 5\n    platform: iam\n"),
        "    platform: iam\n    request",
        "yaml",
        "'platform' appears twice",
    ),
    (broken("id: grant_access", "id: Grant-Access"), "id: Grant-Access", "id", "lower-case"),
    (broken("version: 1", "version: one"), "version: one", "version", "whole number"),
    (broken("version: 1", "version: 0"), "version: 0", "version", "1 or more; got 0"),
    (broken("decision_type: grant_access\n", ""), "id: grant_access", "decision_type", "required"),
    (broken("topic:", "topics:"), "topics:", "topics", "unknown key; use action, decision_type"),
    (
        broken("  user: {type: string}", "  user: {type: text}"),
        "  user:",
        "action.user.type",
        "one of string, integer, number, boolean, object, list; got 'text'",
    ),
    (
        broken("  seats: {type: integer, required: false}", "  seats: {required: false}"),
        "  seats:",
        "action.seats.type",
        "; required",
    ),
    (
        broken("required: false}", "required: maybe}"),
        "  seats:",
        "action.seats.required",
        "true or false",
    ),
    (
        broken("enum: [viewer, editor, admin]", "enum: viewer"),
        "  role:",
        "action.role.enum",
        "list",
    ),
    (
        broken("enum: [viewer, editor, admin]", "enum: [viewer, 2]"),
        "  role:",
        "action.role.enum",
        "2 is not a string",
    ),
    (
        broken("scope:\n", "scope:\n  crm: {id: 1}\n"),
        "  crm: {id: 1}",
        "scope.crm",
        "unknown platform 'crm'; known: billing, google, iam, meta, ticketing",
    ),
    (broken("steps:\n", "steps: []\nold_steps:\n"), "steps: []", "steps", "one or more steps"),
    (
        broken("    platform: billing", "    platform: biling"),
        "platform: biling",
        "steps[2].platform",
        "unknown platform 'biling'",
    ),
    (
        broken("  - id: open_access_ticket", "  - id: grant_iam_role"),
        "  - id: grant_iam_role\n    platform: ticketing",
        "steps[1].id",
        "'grant_iam_role' repeats steps[0].id",
    ),
    (
        broken("    mutation_type: create\n", ""),
        "  - id: open_access_ticket",
        "steps[1].mutation_type",
        "required",
    ),
    (
        broken('    target: {ticket: "ACCESS-{{ id }}"}\n', ""),
        "  - id: open_access_ticket",
        "steps[1].target",
        "required",
    ),
    (
        broken('    target: {ticket: "ACCESS-{{ id }}"}', "    target: [ticket]"),
        "    target: [ticket]",
        "steps[1].target",
        "must be a mapping or a template",
    ),
    (
        broken("      mutation_type: increment\n", ""),
        "      id: release_billing_seat",
        "steps[2].compensation.mutation_type",
        "required",
    ),
    (
        broken("      id: revoke_iam_role\n", "      id: revoke_iam_role\n      platform: iam\n"),
        "      platform: iam",
        "steps[0].compensation.platform",
        "unknown key; use id, mutation_type, payload, request, retry, target, timeout, window",
    ),
    (
        broken("    compensation:\n      id: release", "    undo:\n      id: release"),
        "    undo:",
        "steps[2].undo",
        "unknown key",
    ),
    (
        broken("seats | default(1) }}", "seats | default(1) }"),
        "    payload: {seats:",
        "steps[2].payload.seats",
        "template syntax: unexpected '}'",
    ),
    (
        broken('summary: "{{ action.user }} gets', 'summary: "{{ action.user | shout }} gets'),
        "      summary:",
        "steps[1].payload.summary",
        "template syntax: No filter named 'shout'",
    ),
    (
        broken('payload: {members: "{{ action.user }}"}', 'payload: {members: "{{ user }}"}'),
        'payload: {members: "{{ user }}"}',
        "steps[0].payload.members",
        "unknown name 'user'; use action, decision, id",
    ),
    (
        broken('    target: {group: "{{ action.role }}"}', '    target: "{{ forward.target }}"'),
        '    target: "{{ forward.target }}"',
        "steps[0].target",
        "only a compensation sees forward",
    ),
    (
        broken("max_attempts: 3", "max_attempts: 0"),
        "    retry:",
        "steps[0].retry.max_attempts",
        "at least 1; got 0",
    ),
    (
        broken("initial_interval: 1,", "initial_interval: 60,"),
        "    retry:",
        "steps[0].retry.initial_interval",
        "initial_interval (60) is more than maximum_interval (30)",
    ),
    (broken("    timeout: 5", "    timeout: soon"), "timeout: soon", "steps[0].timeout", "than 0"),
    (
        broken("      window: 60", "      window: 0"),
        "window: 0",
        "steps[0].compensation.window",
        "0",
    ),
    (
        broken("reversibility: reversible", "reversibility: undoable"),
        "reversibility: undoable",
        "steps[0].reversibility",
        "one of reversible, compensatable, irreversible; got 'undoable'",
    ),
    (
        broken(
            "    platform: ticketing\n",
            "    platform: ticketing\n    reversibility: irreversible\n",
        ),
        "    compensation:\n      id: delete_access_ticket",
        "steps[1].compensation",
        "an irreversible step cannot have a compensation",
    ),
    (
        broken("    platform: ticketing\n", "    platform: ticketing\n    no_rollback_reason: x\n"),
        "    no_rollback_reason: x",
        "steps[1].no_rollback_reason",
        "give it or a compensation, not both",
    ),
    (
        broken("method: post", "method: FETCH"),
        "      method: FETCH",
        "steps[0].request.method",
        "one of GET, POST, PUT, PATCH, DELETE; got 'FETCH'",
    ),
    (
        broken('path: "/groups/{{ action.role }}/members"', 'path: "groups/{{ action.role }}"'),
        '      path: "groups/',
        "steps[0].request.path",
        'starting with "/"',
    ),
    (
        broken("scope:", "drill:\n  action: {user: x}\nscope:"),
        "  action: {user: x}",
        "drill.action.role",
        "required (a string)",
    ),
    (
        broken("scope:", "drill:\n  action: {user: x, role: owner, account: a}\nscope:"),
        "  action: {user: x, role: owner",
        "drill.action.role",
        "must be one of viewer, editor, admin; got 'owner'",
    ),
    (
        broken("scope:", 'drill:\n  action: {user: "{{ action.user }}"}\nscope:'),
        '  action: {user: "{{',
        "drill.action.user",
        "unknown name 'action'; use drill",
    ),
    (
        broken("scope:", "drill:\n  seed: {crm: [{target: {}, state: {}}]}\nscope:"),
        "  seed: {crm:",
        "drill.seed.crm",
        "unknown platform 'crm'",
    ),
    (
        broken("scope:", "drill:\n  seed: {iam: [{target: {group: g}}]}\nscope:"),
        "  seed: {iam:",
        "drill.seed.iam[0]",
        "must be {target: ..., state: ...}",
    ),
    (
        broken("    timeout: 5\n", '    timeout: 5\n    snapshot: {path: "groups"}\n'),
        '    snapshot: {path: "groups"}',
        "steps[0].snapshot.path",
        'starting with "/"',
    ),
    (
        broken("    timeout: 5\n", "    timeout: 5\n    snapshot: {path: /g, body: {}}\n"),
        "    snapshot: {path: /g, body",
        "steps[0].snapshot.body",
        "unknown key; use json, method, path",
    ),
]


@pytest.mark.parametrize(("text", "fragment", "field", "phrase"), MALFORMED_WORKFLOWS)
def test_malformed_workflow_file_is_refused_with_line_and_field(
    text: str, fragment: str, field: str, phrase: str
) -> None:
    with pytest.raises(FileInvalid) as refused:
        parse_workflow(text, source="workflows/grant_access.yaml", platforms=PLATFORMS)
    assert_refused(refused.value, line_of(text, fragment), field, phrase)
    assert str(refused.value).startswith("workflows/grant_access.yaml: line ")


def test_a_step_without_compensation_or_reason_is_refused_naming_it() -> None:
    text = GRANT[: GRANT.index("    compensation:\n      id: release_billing_seat")]
    with pytest.raises(FileInvalid) as refused:
        parse_workflow(text, source="workflows/grant_access.yaml", platforms=PLATFORMS)
    assert refused.value.problems == [
        Problem(
            line_of(text, "  - id: reserve_billing_seat"),
            "steps[2]",
            "step 'reserve_billing_seat' declares neither a compensation nor a no_rollback_reason",
            "workflows/grant_access.yaml",
        )
    ]


def test_every_problem_of_a_file_is_reported_at_once() -> None:
    text = broken("version: 1", "version: -1")
    text = broken("platform: billing", "platform: crm", text)
    text = broken("    timeout: 5", "    timeout: 0", text)
    with pytest.raises(FileInvalid) as refused:
        parse_workflow(text, source="g.yaml", platforms=PLATFORMS)
    assert [p.field for p in refused.value.problems] == [
        "version",
        "steps[0].timeout",
        "steps[2].platform",
    ]


def test_workflow_steps_build_the_changes_they_describe() -> None:
    workflow = parse_workflow(GRANT, source="grant_access.yaml", platforms=PLATFORMS)
    assert (workflow.id, workflow.version, workflow.decision_type) == (
        "grant_access",
        1,
        "grant_access",
    )
    assert (workflow.topic, workflow.source) == ("access.grant", "grant_access.yaml")
    grant, ticket, seat = workflow.steps
    assert [s.platform for s in workflow.steps] == ["iam", "ticketing", "billing"]
    assert [s.reversibility for s in workflow.steps] == [
        Reversibility.REVERSIBLE,
        Reversibility.COMPENSATABLE,
        Reversibility.COMPENSATABLE,
    ]
    assert grant.retry == RetryPolicy(
        max_attempts=3, initial_interval=1, maximum_interval=30, retry_after_cap=60
    )
    assert (grant.timeout, ticket.timeout, ticket.retry) == (5.0, 10.0, RetryPolicy())
    assert grant.build(DECISION) == Change(
        "iam",
        "add",
        {"members": "ana.ruiz"},
        {"group": "editor"},
        request={"method": "POST", "path": "/groups/editor/members", "json": {"user": "ana.ruiz"}},
    )
    assert ticket.build(DECISION) == Change(
        "ticketing",
        "create",
        {"summary": "ana.ruiz gets editor", "confidence": 0.88},
        {"ticket": "ACCESS-dec_01J1B9GRANTACCESS0NCALL005"},
    )
    assert seat.build(DECISION) == Change("billing", "increment", {"seats": 1}, {"account": "cc-7"})
    assert workflow.scope(DECISION) == {
        "iam": {"group": "editor"},
        "ticketing": {"ticket": "ACCESS-dec_01J1B9GRANTACCESS0NCALL005"},
        "billing": {"account": "cc-7"},
    }
    assert workflow.contract(DECISION)["platforms"] == ["billing", "iam", "ticketing"]


def test_compensations_build_from_the_decision_and_the_applied_change() -> None:
    workflow = parse_workflow(GRANT, source="grant_access.yaml", platforms=PLATFORMS)
    decision = {**DECISION, "action": {**DECISION["action"], "seats": 3}}
    applied = [step.build(decision) for step in workflow.steps]
    undo = [
        step.compensation.inverse(decision, change)
        for step, change in zip(workflow.steps, applied, strict=True)
        if step.compensation is not None
    ]
    assert undo == [
        Change(
            "iam",
            "remove",
            {"members": "ana.ruiz"},
            {"group": "editor"},
            request={"method": "DELETE", "path": "/groups/editor/members/ana.ruiz"},
        ),
        Change("ticketing", "delete", {}, {"ticket": "ACCESS-dec_01J1B9GRANTACCESS0NCALL005"}),
        Change("billing", "increment", {"seats": -3}, {"account": "cc-7"}),
    ]
    compensation = workflow.steps[0].compensation
    assert compensation is not None
    assert (compensation.id, compensation.window, compensation.timeout) == (
        "revoke_iam_role",
        60.0,
        10.0,
    )


def test_without_a_scope_each_platform_is_covered_by_its_first_target() -> None:
    text = GRANT[: GRANT.index("scope:")] + GRANT[GRANT.index("steps:") :]
    workflow = parse_workflow(text, source="g.yaml", platforms=PLATFORMS)
    assert workflow.scope(DECISION) == {
        "iam": {"group": "editor"},
        "ticketing": {"ticket": "ACCESS-dec_01J1B9GRANTACCESS0NCALL005"},
        "billing": {"account": "cc-7"},
    }


def test_declared_action_fields_are_checked() -> None:
    workflow = parse_workflow(GRANT, source="g.yaml", platforms=PLATFORMS)
    assert workflow.validate_action(DECISION["action"]) == {}
    assert workflow.validate_action(
        {"user": 7, "role": "owner", "account": " ", "seats": True}
    ) == {
        "action.user": "must be a string; got 7",
        "action.role": "must be one of viewer, editor, admin; got 'owner'",
        "action.account": "must not be empty",
        "action.seats": "must be an integer; got True",
    }
    assert workflow.validate_action({"role": "admin", "seats": 2.5}) == {
        "action.user": "required (a string)",
        "action.account": "required (a string)",
        "action.seats": "must be an integer; got 2.5",
    }


def test_templates_keep_native_types_and_never_parse_text() -> None:
    tree = compile_tree(
        {"n": "{{ action.n }}", "text": "{{ action.code }}", "joined": "{{ action.n }}-x"}, "f"
    )
    assert tree({"action": {"n": 5, "code": "123"}}) == {"n": 5, "text": "123", "joined": "5-x"}
    assert tree({"action": {"n": [1], "code": "[1, 2]"}})["text"] == "[1, 2]"
    assert set(tree.names) == {"action"}


def test_the_sandbox_refuses_to_reach_outside_the_data() -> None:
    with pytest.raises(SecurityError):
        ENVIRONMENT.from_string("{{ ''.__class__ }}").render()
    text = broken('summary: "{{ action.user }}', "summary: \"{{ ''.__class__.__mro__ }}")
    workflow = parse_workflow(text, source="g.yaml", platforms=PLATFORMS)
    with pytest.raises(TemplateRenderError, match=r"__class__.*unsafe") as refused:
        workflow.steps[1].build(DECISION)
    assert isinstance(refused.value.__cause__, SecurityError)


def test_a_change_that_renders_wrongly_fails_with_its_field() -> None:
    workflow = parse_workflow(GRANT, source="g.yaml", platforms=PLATFORMS)
    with pytest.raises(TemplateRenderError, match=r"steps\[0\].payload.members: .*'user'"):
        workflow.steps[0].build({**DECISION, "action": {"role": "editor"}})
    with pytest.raises(TemplateRenderError, match=r"steps\[0\].request.path rendered to"):
        workflow.steps[0].build({**DECISION, "action": {**DECISION["action"], "role": ".."}})
    text = broken(
        '    target: {account: "{{ action.account }}"}', '    target: "{{ action.account }}"'
    )
    seat = parse_workflow(text, source="g.yaml", platforms=PLATFORMS).steps[2]
    with pytest.raises(TemplateRenderError, match=r"steps\[2\].target rendered to 'cc-7'"):
        seat.build(DECISION)


def test_a_directory_is_loaded_by_name_and_every_bad_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "b.yml").write_text(broken("id: grant_access", "id: revoke_access"))
    (tmp_path / "a.yaml").write_text(GRANT)
    (tmp_path / "notes.txt").write_text("not a workflow")
    assert [w.id for w in load_workflows_dir(tmp_path, platforms=PLATFORMS)] == [
        "grant_access",
        "revoke_access",
    ]
    (tmp_path / "c.yaml").write_text(GRANT)
    (tmp_path / "d.yaml").write_text(broken("version: 1", "version: 0"))
    with pytest.raises(FileInvalid) as refused:
        load_workflows_dir(tmp_path, platforms=PLATFORMS)
    c, d = str(tmp_path / "c.yaml"), str(tmp_path / "d.yaml")
    assert [(p.source, p.line, p.field) for p in refused.value.problems] == [
        (c, 2, "id"),
        (d, 3, "version"),
    ]
    assert f"{c}: line 2, id: grant_access v1 is also declared in " in str(refused.value)
    assert f"; {d}: line 3, version: required whole number" in str(refused.value)


def test_yaml_merge_keys_may_be_overridden_but_a_key_may_not_repeat() -> None:
    document = load_yaml("base: &b {a: 1, b: 2}\nuse: {<<: *b, b: 3}\n")
    assert document["use"] == {"a": 1, "b": 3}
    assert document["use"].lines["b"] == 2
    with pytest.raises(FileInvalid, match="line 3, yaml: key 'a' appears twice"):
        load_yaml("x:\n  a: 1\n  a: 2\n")
    with pytest.raises(FileInvalid, match="key True must be text; quote it"):
        load_yaml("on: 1\n")


def test_a_drill_block_names_the_drills_own_objects() -> None:
    drill = """drill:
  action: {user: drill.user, role: viewer, account: "{{ drill }}"}
  seed: {billing: [{target: {account: "{{ drill }}"}, state: {seats: 5}}]}
scope:"""
    workflow = parse_workflow(
        broken("scope:", drill), source="grant_access.yaml", platforms=PLATFORMS
    )

    assert workflow.drill_action is not None and workflow.drill_seed is not None
    assert workflow.drill_action("drill-7") == {
        "user": "drill.user",
        "role": "viewer",
        "account": "drill-7",
    }
    assert workflow.drill_seed("drill-7") == {
        "billing": [{"target": {"account": "drill-7"}, "state": {"seats": 5}}]
    }
    assert parse_workflow(GRANT, source="g.yaml", platforms=PLATFORMS).drill_action is None
