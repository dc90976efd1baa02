"""Templates in YAML workflows: Jinja2's sandboxed environment with native types, so
``"{{ action.amount }}"`` stays a number and a template can reach nothing but its data.

Jinja2's own native rendering passes a missing field through as an Undefined object and
runs ``ast.literal_eval`` over text (an agent's ``"123"`` would become the number 123); here
a lone expression keeps exactly its value, anything else is text, and a missing field or
an unsafe attribute is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, Undefined, meta
from jinja2.nativetypes import NativeCodeGenerator, NativeEnvironment, NativeTemplate
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mutations.connectors import Change
from mutations.yamltext import LineMapping

Render = Callable[[Mapping[str, Any]], Any]
DATA_TYPES = (str, int, float, bool, type(None), dict, list)


class TemplateRenderError(ValueError):
    """A template that failed on a decision: which field, which template, and why."""


def _concat(values: Iterable[Any]) -> Any:
    """Return a lone output as it is and join several as text; never parse text."""
    parts = list(values)
    value = parts[0] if len(parts) == 1 else "".join(str(part) for part in parts)
    if isinstance(value, Undefined):  # StrictUndefined fails only when printed
        value._fail_with_undefined_error()
    return value


class _CodeGenerator(NativeCodeGenerator):
    def _output_const_repr(self, group: Iterable[Any]) -> str:
        # Jinja2 writes constants as text and relies on literal_eval to get `{{ 5 }}` back.
        values = list(group)
        return repr(values[0]) if len(values) == 1 else repr("".join(map(str, values)))


class _NativeSandbox(ImmutableSandboxedEnvironment, NativeEnvironment):
    """Sandboxed attribute access and calls (ImmutableSandboxedEnvironment comes first in
    the MRO) with outputs that keep their type (NativeEnvironment's code generator)."""

    code_generator_class = _CodeGenerator
    concat = staticmethod(_concat)


class _Template(NativeTemplate):
    environment_class = _NativeSandbox  # NativeTemplate.render concatenates through it


_NativeSandbox.template_class = _Template
ENVIRONMENT = _NativeSandbox(undefined=StrictUndefined, autoescape=False)


def is_template(value: Any) -> bool:
    """Return whether a value is a template: text containing ``{{`` or ``{%``."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


class TemplateInvalid(ValueError):
    """A template that cannot be compiled, with the field and line it was written at."""

    def __init__(self, field: str, line: int | None, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field, self.line, self.message = field, line, message


@dataclass(frozen=True)
class CompiledTree:
    """A value tree whose templates are compiled once; call it with a context to render."""

    render: Render
    names: dict[str, tuple[str, int | None]]  # each name a template reads: first field, line

    def __call__(self, context: Mapping[str, Any]) -> Any:
        return self.render(context)


def compile_tree(value: Any, field: str, line: int | None = None) -> CompiledTree:
    """Compile every template of a tree of dicts, lists and scalars (YAML's LineMappings
    give nested fields their own line); raise TemplateInvalid for a template that does not
    parse or names an unknown filter or test."""
    names: dict[str, tuple[str, int | None]] = {}
    return CompiledTree(_compile(value, field, line, names), names)


def _compile(
    value: Any, field: str, line: int | None, names: dict[str, tuple[str, int | None]]
) -> Render:
    if is_template(value):
        try:
            parsed = ENVIRONMENT.parse(value)
            template = ENVIRONMENT.from_string(parsed)
        except TemplateSyntaxError as error:
            message = f"template syntax: {error.message or error}"
            raise TemplateInvalid(field, line, message) from None
        for name in sorted(meta.find_undeclared_variables(parsed)):
            names.setdefault(name, (field, line))
        return _template_render(template, value, field)
    if isinstance(value, dict):
        lines = value.lines if isinstance(value, LineMapping) else {}
        parts = {
            key: _compile(item, f"{field}.{key}", lines.get(key, line), names)
            for key, item in value.items()
        }
        return lambda context: {key: part(context) for key, part in parts.items()}
    if isinstance(value, list):
        items = [_compile(item, f"{field}[{n}]", line, names) for n, item in enumerate(value)]
        return lambda context: [item(context) for item in items]
    return lambda context: value


def _template_render(template: Any, text: str, field: str) -> Render:
    def render(context: Mapping[str, Any]) -> Any:
        try:
            value = template.render(**context)
        except TemplateError as error:
            raise TemplateRenderError(f"{field}: {text!r} failed: {error}") from error
        if not _is_data(value):
            raise TemplateRenderError(
                f"{field}: {text!r} rendered to a {type(value).__name__}, not data "
                "(text, number, true/false, null, list or mapping; add | list to a sequence)"
            )
        return value

    return render


def _is_data(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_data(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_data(item) for item in value)
    return isinstance(value, DATA_TYPES)


# ---- what a YAML workflow renders at run time ---------------------------------------------


def decision_context(decision: Mapping[str, Any]) -> dict[str, Any]:
    """Return the names a template sees: the decision, its action and its id."""
    return {"decision": decision, "action": decision.get("action", {}), "id": decision.get("id")}


@dataclass(frozen=True)
class ChangeTemplate:
    """A change whose target, payload and request are rendered from a decision."""

    where: str  # the field it was declared at, for the message of a change gone wrong
    mutation_type: str
    target: CompiledTree
    payload: CompiledTree
    request: CompiledTree | None

    def build(self, platform: str, context: Mapping[str, Any]) -> Change:
        target, payload = self.target(context), self.payload(context)
        for name, value in (("target", target), ("payload", payload)):
            if not isinstance(value, dict):
                raise TemplateRenderError(
                    f"{self.where}.{name} rendered to {value!r}; it must be a mapping"
                )
        request = self.request(context) if self.request is not None else None
        if request is not None and _escapes(request["path"]):
            raise TemplateRenderError(
                f"{self.where}.request.path rendered to {request['path']!r}; a path is text "
                'starting with "/" and without "." or ".." segments'
            )
        return Change(platform, self.mutation_type, payload, target, request=request)

    def inverse(self, decision: Mapping[str, Any], applied: Change) -> Change:
        """Build a compensation: its templates also see ``forward``, the applied change."""
        forward = {
            "platform": applied.platform,
            "mutation_type": applied.mutation_type,
            "target": applied.target,
            "payload": applied.payload,
        }
        return self.build(applied.platform, {**decision_context(decision), "forward": forward})


def _escapes(path: Any) -> bool:
    """Whether a rendered request path could leave the resource its template names (an
    agent's value such as "../admin")."""
    if not isinstance(path, str) or not path.startswith("/"):
        return True
    return any(part in (".", "..") for part in path.split("?")[0].split("/"))


@dataclass(frozen=True)
class ScopeTemplate:
    """The platform targets whose state the run's hashes cover, rendered from a decision."""

    where: str
    targets: Mapping[str, CompiledTree]

    def __call__(self, decision: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        context, scope = decision_context(decision), {}
        for platform, tree in self.targets.items():
            scope[platform] = target = tree(context)
            if not isinstance(target, dict):
                raise TemplateRenderError(
                    f"{self.where}.{platform} rendered to {target!r}; it must be a mapping"
                )
        return scope
