"""Workflows declared in YAML (``BACKSTOP_WORKFLOWS_DIR``), checked like policies: every
problem names its file, line and field. Values are sandboxed templates over the decision
(``decision``, ``action``, ``id``; compensations also see ``forward``, the applied change;
the ``drill`` block sees ``drill``, a name of the drill's own).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from functools import partial
from pathlib import Path
from typing import Any

from mutations.yamltext import (
    FileInvalid,
    LineMapping,
    Problem,
    load_yaml,
    read_file,
    unknown_keys,
)
from runs.retry import RetryPolicy
from runs.workflows.action_fields import (
    fields_schema,
    parse_fields,
    validate_action,
)
from runs.workflows.registry import Compensation, Reversibility, Step, Workflow
from runs.workflows.retry_fields import parse_retry, parse_seconds
from runs.workflows.templates import (
    ChangeTemplate,
    CompiledTree,
    ScopeTemplate,
    TemplateInvalid,
    TemplateRenderError,
    compile_tree,
    decision_context,
    is_template,
)

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
TOP_KEYS = frozenset(
    {"id", "version", "decision_type", "topic", "description", "action", "scope", "steps", "drill"}
)
CHANGE_KEYS = frozenset({"id", "mutation_type", "target", "payload", "request", "retry", "timeout"})
STEP_KEYS = CHANGE_KEYS | {
    "platform",
    "compensation",
    "no_rollback_reason",
    "reversibility",
    "snapshot",
}
COMPENSATION_KEYS = CHANGE_KEYS | {"window"}
REQUEST_KEYS = frozenset({"method", "path", "json"})
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
REVERSIBILITIES = tuple(r.value for r in Reversibility)
DECISION_ROOTS = frozenset({"decision", "action", "id"})
COMPENSATION_ROOTS = DECISION_ROOTS | {"forward"}
DRILL_ROOTS = frozenset({"drill"})
DEFAULT_TIMEOUT = 10.0  # seconds a platform call may take
DEFAULT_WINDOW = 30.0  # seconds a compensation keeps retrying after its first attempt


def load_workflows_dir(directory: Path, *, platforms: Collection[str]) -> list[Workflow]:
    """Return the workflows of every ``*.yaml``/``*.yml`` file (hidden ones are an editor's),
    sorted by name, or raise one FileInvalid listing every file's problems, each naming it."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileInvalid(
            [Problem(None, "directory", "does not exist or is not a directory")],
            source=str(directory),
        )
    workflows: list[Workflow] = []
    problems: list[Problem] = []
    declared: dict[tuple[str, int], str] = {}
    paths = [*directory.glob("*.yaml"), *directory.glob("*.yml")]
    for path in sorted((p for p in paths if not p.name.startswith(".")), key=lambda p: p.name):
        try:
            workflow, line = _parse(read_file(path), source=str(path), platforms=platforms)
        except FileInvalid as invalid:
            problems.extend(invalid.problems)
            continue
        key = (workflow.id, workflow.version)
        if key in declared:
            message = f"{workflow.id} v{workflow.version} is also declared in {declared[key]}"
            problems.append(Problem(line, "id", message + "; bump the version", str(path)))
            continue
        declared[key] = str(path)
        workflows.append(workflow)
    if problems:
        raise FileInvalid(problems)
    return workflows


def parse_workflow(text: str, *, source: str, platforms: Collection[str]) -> Workflow:
    """Return the workflow a YAML text declares, or raise FileInvalid naming line and field."""
    return _parse(text, source=source, platforms=platforms)[0]


def _parse(text: str, *, source: str, platforms: Collection[str]) -> tuple[Workflow, int]:
    document = load_yaml(text, source=source)
    if not isinstance(document, LineMapping):
        raise FileInvalid(
            [Problem(1, "workflow", "must be a mapping with id, version and steps")], source=source
        )
    parser = _Parser(frozenset(platforms), source)
    workflow = parser.workflow(document)
    if parser.problems or workflow is None:
        raise FileInvalid(sorted(parser.problems, key=lambda p: p.line or 0), source=source)
    return workflow, document.line_of("id")


class _Parser:
    def __init__(self, platforms: frozenset[str], source: str) -> None:
        self.platforms = platforms
        self.source = source
        self.problems: list[Problem] = []
        self.first_targets: dict[str, CompiledTree] = {}  # the default scope

    def problem(self, line: int | None, field: str, message: str) -> None:
        self.problems.append(Problem(line, field, message))

    def bad(self, mapping: LineMapping, key: str, field: str, message: str) -> None:
        """Report ``key`` of a mapping at ``field``: at its line, or the mapping's if missing."""
        self.problem(mapping.line_of(key), f"{field}.{key}" if field else key, message)

    def workflow(self, doc: LineMapping) -> Workflow | None:
        unknown_keys(doc, TOP_KEYS, "", self.problems)
        for key in ("id", "decision_type"):
            if not isinstance(doc.get(key), str) or not IDENTIFIER.match(doc[key]):
                self.bad(doc, key, "", "required: lower-case letters, digits and _ (<= 64)")
        version = doc.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            self.bad(doc, "version", "", f"required whole number, 1 or more; got {version!r}")
        for key in ("topic", "description"):
            if not isinstance(doc.get(key, ""), str):
                self.bad(doc, key, "", "must be text")
        fields = parse_fields(doc, self.problems)
        raw_steps = doc.get("steps")
        if not isinstance(raw_steps, list) or not raw_steps:
            self.bad(doc, "steps", "", "required: a list of one or more steps")
            raw_steps = []
        steps = [
            self.step(raw, f"steps[{n}]", doc.line_of("steps")) for n, raw in enumerate(raw_steps)
        ]
        self.repeated_ids(raw_steps, steps)
        scope = self.scope(doc)
        drill_action = self.drill(doc, fields)
        drill_seed = self.drill_seed(doc)
        if self.problems or scope is None:
            return None
        return Workflow(
            id=doc["id"],
            version=int(doc["version"]),
            decision_type=doc["decision_type"],
            topic=str(doc.get("topic", "")),
            description=str(doc.get("description", "")),
            steps=tuple(step for step in steps if step is not None),
            scope=scope,
            validate_action=lambda action: validate_action(action, fields),
            source=self.source,
            drill_action=drill_action,
            drill_seed=drill_seed,
            action_json_schema=partial(fields_schema, fields),
        )

    def repeated_ids(self, raw_steps: list[Any], steps: list[Step | None]) -> None:
        """Report a step or compensation id used twice: the timeline names them by id."""
        seen: dict[str, str] = {}
        for n, (raw, step) in enumerate(zip(raw_steps, steps, strict=True)):
            named = [(raw, f"steps[{n}]")] if step else []
            if step and step.compensation:
                named.append((raw["compensation"], f"steps[{n}].compensation"))
            for mapping, field in named:
                if mapping["id"] in seen:
                    self.bad(
                        mapping, "id", field, f"{mapping['id']!r} repeats {seen[mapping['id']]}"
                    )
                seen.setdefault(mapping["id"], f"{field}.id")

    def scope(self, doc: LineMapping) -> ScopeTemplate | None:
        """Return the scope function: the declared one or each platform's first target."""
        if "scope" not in doc:
            return ScopeTemplate("scope", self.first_targets)
        raw = doc["scope"]
        if not isinstance(raw, LineMapping) or not raw:
            self.bad(doc, "scope", "", "must map platform names to targets")
            return None
        entries: dict[str, CompiledTree] = {}
        for platform, target in raw.items():
            field, line = f"scope.{platform}", raw.lines[platform]
            if platform not in self.platforms:
                self.problem(line, field, self.unknown_platform(platform))
            elif not isinstance(target, dict) and not is_template(target):
                self.problem(line, field, "must be a mapping or a template")
            elif tree := self.tree(target, line, field, DECISION_ROOTS):
                entries[platform] = tree
        return ScopeTemplate("scope", entries)

    def step(self, raw: Any, field: str, line: int) -> Step | None:
        if not isinstance(raw, LineMapping):
            self.problem(line, field, "must be a mapping with id, platform, mutation_type, target")
            return None
        count = len(self.problems)
        unknown_keys(raw, STEP_KEYS, field, self.problems)
        step_id = raw.get("id")
        platform = raw.get("platform")
        if not isinstance(platform, str):
            self.bad(raw, "platform", field, "required platform name")
        elif platform not in self.platforms:
            self.bad(raw, "platform", field, self.unknown_platform(platform))
        change = self.change(raw, field, DECISION_ROOTS)
        reversibility = raw.get("reversibility", Reversibility.COMPENSATABLE.value)
        if reversibility not in REVERSIBILITIES:
            choices = ", ".join(REVERSIBILITIES)
            self.bad(raw, "reversibility", field, f"one of {choices}; got {reversibility!r}")
        undo, reason = raw.get("compensation"), raw.get("no_rollback_reason")
        if reason is not None and (not isinstance(reason, str) or not reason.strip()):
            self.bad(raw, "no_rollback_reason", field, "must be text saying why")
        elif undo is None and reason is None:
            message = f"step {step_id!r} declares neither a compensation nor a no_rollback_reason"
            self.problem(raw.line, field, message)
        elif undo is not None and reason is not None:
            self.bad(raw, "no_rollback_reason", field, "give it or a compensation, not both")
        if undo is not None and reversibility == Reversibility.IRREVERSIBLE:
            message = "an irreversible step cannot have a compensation; mark it compensatable"
            self.bad(raw, "compensation", field, message)
        compensation = self.compensation(undo, f"{field}.compensation", raw.line_of("compensation"))
        retry = self.retry(raw, field)
        timeout = self.seconds(raw, "timeout", field, DEFAULT_TIMEOUT)
        snapshot = self.request(raw, field, DECISION_ROOTS, key="snapshot", method="GET")
        if len(self.problems) > count or change is None:
            return None
        self.first_targets.setdefault(str(platform), _read_by(snapshot) or change.target)
        return Step(
            id=str(step_id),
            platform=str(platform),
            build=lambda decision: change.build(str(platform), decision_context(decision)),
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
        change = self.change(raw, field, COMPENSATION_ROOTS)
        retry = self.retry(raw, field)
        timeout = self.seconds(raw, "timeout", field, DEFAULT_TIMEOUT)
        window = self.seconds(raw, "window", field, DEFAULT_WINDOW)
        if len(self.problems) > count or change is None:
            return None
        return Compensation(
            id=raw["id"],
            build_from_decision=change.inverse,
            retry=retry,
            timeout=timeout,
            window=window,
        )

    def change(self, raw: LineMapping, field: str, roots: frozenset[str]) -> ChangeTemplate | None:
        """Check the keys a step and a compensation share; return its change template."""
        if not isinstance(raw.get("id"), str) or not IDENTIFIER.match(raw["id"]):
            self.bad(raw, "id", field, "required: lower-case letters, digits and _")
        mutation_type = raw.get("mutation_type")
        if not isinstance(mutation_type, str) or not mutation_type.strip():
            self.bad(raw, "mutation_type", field, "required text, e.g. add")
        trees = {}
        for key in ("target", "payload"):
            value = raw.get(key, {} if key == "payload" else None)
            if key not in raw and key == "target":
                self.problem(raw.line, f"{field}.target", "required: the platform object changed")
            elif not isinstance(value, dict) and not is_template(value):
                self.bad(raw, key, field, "must be a mapping or a template")
            else:
                trees[key] = self.tree(value, raw.line_of(key), f"{field}.{key}", roots)
        request = self.request(raw, field, roots)
        target, payload = trees.get("target"), trees.get("payload")
        if target is None or payload is None or not isinstance(mutation_type, str):
            return None
        return ChangeTemplate(field, mutation_type, target, payload, request)

    def request(
        self,
        owner: LineMapping,
        field: str,
        roots: frozenset[str],
        *,
        key: str = "request",
        method: str = "POST",
    ) -> CompiledTree | None:
        """Compile a step's own HTTP request (``request``, or ``snapshot`` for its state)."""
        raw, field = owner.get(key), f"{field}.{key}"
        if raw is None:
            return None
        if not isinstance(raw, LineMapping):
            self.problem(owner.line_of(key), field, "a mapping with method, path and json")
            return None
        unknown_keys(raw, REQUEST_KEYS, field, self.problems)
        method = raw.get("method", method)
        if not isinstance(method, str) or method.upper() not in METHODS:
            self.bad(raw, "method", field, f"one of {', '.join(METHODS)}; got {method!r}")
            method = "POST"
        path = raw.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            self.bad(raw, "path", field, 'required text starting with "/"')
        request = LineMapping(raw, method=method.upper())
        request.line, request.lines = raw.line, raw.lines
        return self.tree(request, raw.line, field, roots)

    def drill(
        self, doc: LineMapping, fields: Mapping[str, Mapping[str, Any]]
    ) -> Callable[[str], dict[str, Any]] | None:
        """Return the action a drill proposes (``drill: {action: ...}``), checked against
        the declared action fields."""
        raw = doc.get("drill")
        if raw is None:
            return None
        if not isinstance(raw, LineMapping):
            self.bad(doc, "drill", "", "a mapping with action: the action a drill proposes")
            return None
        unknown_keys(raw, frozenset({"action", "seed"}), "drill", self.problems)
        if not isinstance(raw.get("action"), LineMapping):
            self.bad(raw, "action", "drill", "required mapping of action field values")
            return None
        tree = self.tree(raw["action"], raw.line_of("action"), "drill.action", DRILL_ROOTS)
        if tree is None:
            return None
        try:
            errors = validate_action(tree({"drill": "drill-check"}), fields)
        except TemplateRenderError as error:
            errors = {"drill.action": str(error)}
        for name, message in errors.items():
            key = name.removeprefix("action.")
            self.bad(raw["action"], key, "drill.action", message)
        return lambda name: dict(tree({"drill": name}))

    def drill_seed(self, doc: LineMapping) -> Callable[[str], dict[str, Any]] | None:
        """Return the objects a drill creates first: ``seed: {platform: [{target, state}]}``."""
        raw = doc.get("drill")
        if not isinstance(raw, LineMapping) or raw.get("seed") is None:
            return None
        seed = raw["seed"]
        if not isinstance(seed, LineMapping):
            self.bad(raw, "seed", "drill", "must map platform names to lists of {target, state}")
            return None
        trees: dict[str, CompiledTree] = {}
        for platform, objects in seed.items():
            field, line = f"drill.seed.{platform}", seed.lines[platform]
            if platform not in self.platforms:
                self.problem(line, field, self.unknown_platform(platform))
                continue
            if not isinstance(objects, list) or not objects:
                self.problem(line, field, "a list of {target: ..., state: ...}")
                continue
            for n, entry in enumerate(objects):
                if not isinstance(entry, LineMapping) or set(entry) != {"target", "state"}:
                    self.problem(line, f"{field}[{n}]", "must be {target: ..., state: ...}")
            if (tree := self.tree(objects, line, field, DRILL_ROOTS)) is not None:
                trees[platform] = tree
        return lambda name: {platform: tree({"drill": name}) for platform, tree in trees.items()}

    def retry(self, raw: LineMapping, field: str) -> RetryPolicy:
        return parse_retry(raw, field, self.problems)

    def seconds(self, raw: LineMapping, key: str, field: str, default: float) -> float:
        return parse_seconds(raw, key, field, default, self.problems)

    def tree(self, value: Any, line: int, field: str, roots: frozenset[str]) -> CompiledTree | None:
        """Compile a value's templates; report syntax errors and names other than ``roots``."""
        try:
            tree = compile_tree(value, field, line)
        except TemplateInvalid as invalid:
            self.problem(invalid.line, invalid.field, invalid.message)
            return None
        for name, (where, name_line) in tree.names.items():
            if name not in roots:
                hint = " (only a compensation sees forward)" if name == "forward" else ""
                message = f"unknown name {name!r}; use {', '.join(sorted(roots))}{hint}"
                self.problem(name_line, where, message)
        return tree if roots.issuperset(tree.names) else None

    def unknown_platform(self, platform: str) -> str:
        known = ", ".join(sorted(self.platforms)) or "none"
        return f"unknown platform {platform!r}; known: {known} (declare it in the platforms file)"


def _read_by(snapshot: CompiledTree | None) -> CompiledTree | None:
    """Return the scope target a step's ``snapshot`` request stands for."""
    if snapshot is None:
        return None
    return CompiledTree(lambda context: {"request": snapshot(context)}, snapshot.names)
