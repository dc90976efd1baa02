"""Workflows declared in YAML (``BACKSTOP_WORKFLOWS_DIR``), checked like policies: every
problem names its file, line and field. Values are sandboxed templates over the decision
(``decision``, ``action``, ``id``; compensations also see ``forward``, the applied change).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError

from mutations.connectors import Change
from mutations.yamltext import FileInvalid, LineMapping, Problem, load_yaml, unknown_keys
from runs.retry import RetryPolicy
from runs.workflows.registry import Compensation, DecisionDoc, Reversibility, Step, Workflow
from runs.workflows.templates import Rendered, TemplateRenderError, compile_tree, names_used

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
TOP_KEYS = frozenset(
    {"id", "version", "decision_type", "topic", "description", "action", "scope", "steps"}
)
STEP_KEYS = frozenset(
    {
        "id",
        "platform",
        "mutation_type",
        "target",
        "payload",
        "request",
        "compensation",
        "no_rollback_reason",
        "reversibility",
        "retry",
        "timeout",
    }
)
COMPENSATION_KEYS = frozenset(
    {"id", "mutation_type", "target", "payload", "request", "retry", "timeout", "window"}
)
REQUEST_KEYS = frozenset({"method", "path", "json"})
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
RETRY_KEYS = frozenset(
    {
        "max_attempts",
        "initial_interval",
        "backoff_coefficient",
        "maximum_interval",
        "jitter",
        "retry_after_cap",
    }
)
FIELD_KEYS = frozenset({"type", "required", "enum", "description"})
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "list": (list,),
}
DECISION_ROOTS = frozenset({"decision", "action", "id"})
COMPENSATION_ROOTS = DECISION_ROOTS | {"forward"}


def load_workflows_dir(directory: Path, *, platforms: Collection[str]) -> list[Workflow]:
    """Return the workflows of every ``*.yaml``/``*.yml`` file, or raise one FileInvalid
    listing the problems of every file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileInvalid(
            [Problem(None, "directory", "does not exist or is not a directory")],
            source=str(directory),
        )
    workflows, refused = [], []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            workflows.append(
                parse_workflow(path.read_text(), source=str(path), platforms=platforms)
            )
        except FileInvalid as invalid:
            refused.append(invalid)
    if len(refused) == 1:
        raise refused[0]
    if refused:
        raise FileInvalid([Problem(None, "files", " | ".join(map(str, refused)))])
    return workflows


def parse_workflow(text: str, *, source: str, platforms: Collection[str]) -> Workflow:
    """Return the workflow a YAML text declares, or raise FileInvalid naming line and field."""
    document = load_yaml(text, source=source)
    if not isinstance(document, LineMapping):
        raise FileInvalid(
            [Problem(1, "workflow", "must be a mapping with id and steps")], source=source
        )
    parser = _Parser(source, frozenset(platforms))
    workflow = parser.workflow(document)
    if parser.problems or workflow is None:
        raise FileInvalid(sorted(parser.problems, key=lambda p: p.line or 0), source=source)
    return workflow


def decision_context(decision: DecisionDoc) -> dict[str, Any]:
    return {"decision": decision, "action": decision.get("action", {}), "id": decision.get("id")}


class _Parser:
    def __init__(self, source: str, platforms: frozenset[str]) -> None:
        self.source = source
        self.platforms = platforms
        self.problems: list[Problem] = []

    def problem(self, line: int | None, field: str, message: str) -> None:
        self.problems.append(Problem(line, field, message))

    # ---- the document ------------------------------------------------------------------

    def workflow(self, doc: LineMapping) -> Workflow | None:
        unknown_keys(doc, TOP_KEYS, "", self.problems)
        for key in ("id", "decision_type"):
            if not isinstance(doc.get(key), str) or not IDENTIFIER.match(doc[key]):
                self.problem(doc.line_of(key), key, "required: lower-case letters, digits and _")
        version = doc.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            self.problem(doc.line_of("version"), "version", "required whole number, 1 or more")
        for key in ("topic", "description"):
            if not isinstance(doc.get(key, ""), str):
                self.problem(doc.line_of(key), key, "must be text")
        fields = self.action_fields(doc)
        raw_steps = doc.get("steps")
        if not isinstance(raw_steps, list) or not raw_steps:
            self.problem(doc.line_of("steps"), "steps", "required: a list of one or more steps")
            raw_steps = []
        steps = [self.step(raw, n, doc.line_of("steps")) for n, raw in enumerate(raw_steps)]
        seen: dict[str, int] = {}
        for n, (raw, step) in enumerate(zip(raw_steps, steps, strict=True)):
            if step is not None and step.id in seen:
                self.problem(raw.line_of("id"), f"steps[{n}].id", f"repeats steps[{seen[step.id]}]")
            if step is not None:
                seen.setdefault(step.id, n)
        scope = self.scope(doc, raw_steps)
        if self.problems or scope is None:
            return None
        return Workflow(
            id=doc["id"],
            version=int(doc["version"]),
            decision_type=doc["decision_type"],
            topic=str(doc.get("topic", "")),
            description=str(doc.get("description", "")),
            steps=tuple(s for s in steps if s is not None),
            scope=lambda d: scope(decision_context(d)),
            validate_action=lambda action: _validate_action(action, fields),
            source=self.source,
        )

    def action_fields(self, doc: LineMapping) -> dict[str, LineMapping]:
        raw = doc.get("action", LineMapping())
        if not isinstance(raw, LineMapping):
            self.problem(doc.line_of("action"), "action", "must map field names to {type: ...}")
            return {}
        for name, spec in raw.items():
            field = f"action.{name}"
            if not isinstance(spec, LineMapping):
                self.problem(raw.lines[name], field, "must be a mapping such as {type: string}")
                continue
            unknown_keys(spec, FIELD_KEYS, field, self.problems)
            if spec.get("type") not in FIELD_TYPES:
                self.problem(
                    spec.line_of("type"), f"{field}.type", f"one of {', '.join(FIELD_TYPES)}"
                )
            if not isinstance(spec.get("required", True), bool):
                self.problem(spec.line_of("required"), f"{field}.required", "true or false")
            if "enum" in spec and (not isinstance(spec["enum"], list) or not spec["enum"]):
                self.problem(spec.line_of("enum"), f"{field}.enum", "a non-empty list of values")
        return {name: spec for name, spec in raw.items() if isinstance(spec, LineMapping)}

    def scope(self, doc: LineMapping, raw_steps: list[Any]) -> Rendered | None:
        raw = doc.get("scope")
        if raw is None:  # each platform's first step target
            raw = {}
            for step in raw_steps:
                if isinstance(step, LineMapping) and isinstance(step.get("platform"), str):
                    raw.setdefault(step["platform"], step.get("target"))
        elif not isinstance(raw, LineMapping) or not raw:
            self.problem(doc.line_of("scope"), "scope", "must map platform names to targets")
            return None
        for platform in raw:
            line = raw.line_of(platform) if isinstance(raw, LineMapping) else doc.line
            if platform not in self.platforms:
                self.problem(line, f"scope.{platform}", self.unknown_platform(platform))
        return self.template(raw, doc.line_of("scope"), "scope", DECISION_ROOTS)

    # ---- steps -------------------------------------------------------------------------

    def step(self, raw: Any, n: int, line: int) -> Step | None:
        field = f"steps[{n}]"
        if not isinstance(raw, LineMapping):
            self.problem(line, field, "must be a mapping with id, platform, mutation_type, target")
            return None
        count = len(self.problems)
        unknown_keys(raw, STEP_KEYS, field, self.problems)
        step_id = raw.get("id")
        if not isinstance(step_id, str) or not IDENTIFIER.match(step_id):
            self.problem(
                raw.line_of("id"), f"{field}.id", "required: lower-case letters, digits, _"
            )
        platform = raw.get("platform")
        if not isinstance(platform, str):
            self.problem(raw.line_of("platform"), f"{field}.platform", "required platform name")
        elif platform not in self.platforms:
            self.problem(
                raw.line_of("platform"), f"{field}.platform", self.unknown_platform(platform)
            )
        change = self.change(raw, field, DECISION_ROOTS)
        reversibility = raw.get("reversibility", Reversibility.COMPENSATABLE.value)
        if reversibility not in Reversibility.__members__.values():
            self.problem(
                raw.line_of("reversibility"),
                f"{field}.reversibility",
                f"one of {', '.join(Reversibility)}; got {reversibility!r}",
            )
        undo = raw.get("compensation")
        reason = raw.get("no_rollback_reason")
        if undo is None and not reason:
            self.problem(
                raw.line,
                field,
                f"step {step_id!r} declares neither a compensation nor a no_rollback_reason",
            )
        if undo is not None and reason:
            self.problem(
                raw.line_of("no_rollback_reason"),
                field,
                "give a compensation or a no_rollback_reason, not both",
            )
        if undo is not None and reversibility == Reversibility.IRREVERSIBLE:
            self.problem(
                raw.line_of("compensation"),
                f"{field}.compensation",
                "an irreversible step cannot have a compensation",
            )
        if reason is not None and not isinstance(reason, str):
            self.problem(raw.line_of("no_rollback_reason"), f"{field}.no_rollback_reason", "text")
        compensation = self.compensation(undo, f"{field}.compensation", raw.line_of("compensation"))
        retry = self.retry(raw, field)
        timeout = self.seconds(raw, "timeout", field, 10.0)
        if len(self.problems) > count or change is None:
            return None
        build = _change_builder(str(platform), *change)
        return Step(
            id=str(step_id),
            platform=str(platform),
            build=lambda d: build(decision_context(d)),
            compensation=compensation,
            no_rollback_reason=str(reason or ""),
            reversibility=Reversibility(reversibility),
            retry=retry,
            timeout=timeout,
        )

    def compensation(self, raw: Any, field: str, line: int) -> Compensation | None:
        if raw is None:
            return None
        if not isinstance(raw, LineMapping):
            self.problem(line, field, "must be a mapping with id, mutation_type, target")
            return None
        count = len(self.problems)
        unknown_keys(raw, COMPENSATION_KEYS, field, self.problems)
        if not isinstance(raw.get("id"), str) or not IDENTIFIER.match(raw["id"]):
            self.problem(
                raw.line_of("id"), f"{field}.id", "required: lower-case letters, digits, _"
            )
        change = self.change(raw, field, COMPENSATION_ROOTS)
        retry = self.retry(raw, field)
        timeout = self.seconds(raw, "timeout", field, 10.0)
        window = self.seconds(raw, "window", field, 30.0)
        if len(self.problems) > count or change is None:
            return None
        mutation_type, target, payload, request = change

        def inverse(decision: DecisionDoc, applied: Change) -> Change:
            forward = {
                "platform": applied.platform,
                "mutation_type": applied.mutation_type,
                "target": applied.target,
                "payload": applied.payload,
            }
            context = {**decision_context(decision), "forward": forward}
            return _change_builder(applied.platform, mutation_type, target, payload, request)(
                context
            )

        return Compensation(
            id=raw["id"], build_from_decision=inverse, retry=retry, timeout=timeout, window=window
        )

    def change(
        self, raw: LineMapping, field: str, roots: frozenset[str]
    ) -> tuple[str, Rendered, Rendered, Rendered | None] | None:
        mutation_type = raw.get("mutation_type")
        if not isinstance(mutation_type, str) or not mutation_type:
            self.problem(raw.line_of("mutation_type"), f"{field}.mutation_type", "required text")
        if "target" not in raw:
            self.problem(raw.line, f"{field}.target", "required: the platform object changed")
        target = self.template(raw.get("target"), raw.line_of("target"), f"{field}.target", roots)
        payload = self.template(
            raw.get("payload", {}), raw.line_of("payload"), f"{field}.payload", roots
        )
        for key in ("target", "payload"):
            value = raw.get(key, {})
            if not isinstance(value, dict) and not (isinstance(value, str) and "{{" in value):
                self.problem(raw.line_of(key), f"{field}.{key}", "must be a mapping or a template")
        request = self.request(raw.get("request"), raw.line_of("request"), field, roots)
        if target is None or payload is None or not isinstance(mutation_type, str):
            return None
        return mutation_type, target, payload, request

    def request(self, raw: Any, line: int, field: str, roots: frozenset[str]) -> Rendered | None:
        if raw is None:
            return None
        field = f"{field}.request"
        if not isinstance(raw, LineMapping):
            self.problem(line, field, "must be a mapping with method, path and json")
            return None
        unknown_keys(raw, REQUEST_KEYS, field, self.problems)
        if str(raw.get("method", "POST")).upper() not in METHODS:
            self.problem(raw.line_of("method"), f"{field}.method", f"one of {', '.join(METHODS)}")
        path = raw.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            self.problem(raw.line_of("path"), f"{field}.path", 'required, starting with "/"')
        return self.template(dict(raw), line, field, roots)

    def retry(self, raw: LineMapping, field: str) -> RetryPolicy:
        spec = raw.get("retry", {})
        field = f"{field}.retry"
        if not isinstance(spec, LineMapping):
            if spec != {}:
                self.problem(raw.line_of("retry"), field, "must be a mapping of retry settings")
            return RetryPolicy()
        unknown_keys(spec, RETRY_KEYS, field, self.problems)
        values = {}
        for key, value in spec.items():
            if key not in RETRY_KEYS:
                continue
            whole = key == "max_attempts"
            if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
                kind = "a whole number" if whole else "a number of seconds"
                self.problem(spec.lines[key], f"{field}.{key}", f"must be {kind}; got {value!r}")
            elif value < (1 if whole else 0):
                self.problem(spec.lines[key], f"{field}.{key}", f"too small: {value!r}")
            else:
                values[key] = value
        try:
            return RetryPolicy(**values)
        except ValueError as error:
            self.problem(raw.line_of("retry"), field, str(error))
            return RetryPolicy()

    def seconds(self, raw: LineMapping, key: str, field: str, default: float) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            self.problem(raw.line_of(key), f"{field}.{key}", f"seconds, more than 0; got {value!r}")
            return default
        return float(value)

    def template(self, value: Any, line: int, field: str, roots: frozenset[str]) -> Rendered | None:
        try:
            unknown = names_used(value) - roots
        except TemplateSyntaxError as error:
            self.problem(line, field, f"template syntax: {error.message}")
            return None
        if unknown:
            self.problem(
                line,
                field,
                f"unknown name {', '.join(sorted(unknown))}; use {', '.join(sorted(roots))}",
            )
            return None
        return compile_tree(value, field)

    def unknown_platform(self, platform: str) -> str:
        known = ", ".join(sorted(self.platforms))
        return f"unknown platform {platform!r}; known: {known} (declare it in the platforms file)"


def _change_builder(
    platform: str,
    mutation_type: str,
    target: Rendered,
    payload: Rendered,
    request: Rendered | None,
) -> Any:
    def build(context: Mapping[str, Any]) -> Change:
        rendered_target, rendered_payload = target(context), payload(context)
        for name, value in (("target", rendered_target), ("payload", rendered_payload)):
            if not isinstance(value, dict):
                raise TemplateRenderError(
                    f"{mutation_type}: {name} rendered to {value!r}, not a mapping"
                )
        return Change(
            platform=platform,
            mutation_type=mutation_type,
            payload=rendered_payload,
            target=rendered_target,
            request=request(context) if request is not None else None,
        )

    return build


def _validate_action(
    action: Mapping[str, Any], fields: Mapping[str, Mapping[str, Any]]
) -> dict[str, str]:
    errors: dict[str, str] = {}
    for name, spec in fields.items():
        key = f"action.{name}"
        if name not in action or action[name] is None:
            if spec.get("required", True):
                errors[key] = f"required ({spec.get('type')})"
            continue
        value = action[name]
        kind = spec.get("type", "string")
        wrong_bool = isinstance(value, bool) and kind != "boolean"
        if wrong_bool or not isinstance(value, FIELD_TYPES.get(kind, (object,))):
            errors[key] = f"must be {'an' if kind[0] in 'aeiou' else 'a'} {kind}; got {value!r}"
        elif kind == "string" and not str(value).strip():
            errors[key] = "must not be empty"
        elif "enum" in spec and value not in spec["enum"]:
            errors[key] = f"must be one of {', '.join(map(str, spec['enum']))}; got {value!r}"
    return errors
