"""Templates in YAML workflows: Jinja2's sandboxed environment with native types, so
``"{{ action.amount }}"`` stays a number and a template can reach nothing but its data."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.nativetypes import NativeEnvironment
from jinja2.sandbox import ImmutableSandboxedEnvironment

Rendered = Callable[[Mapping[str, Any]], Any]


class _NativeSandbox(ImmutableSandboxedEnvironment, NativeEnvironment):
    """Sandboxed attribute access (ImmutableSandboxedEnvironment) and values of their own
    type rather than text (NativeEnvironment)."""


ENVIRONMENT = _NativeSandbox(undefined=StrictUndefined, autoescape=False)


class TemplateRenderError(ValueError):
    """A template that failed on a decision: what it was, where, and why."""


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def names_used(value: Any) -> set[str]:
    """Return the top-level names the templates of a value tree refer to.

    Raises jinja2's TemplateSyntaxError for a template that does not parse.
    """
    if is_template(value):
        return set(meta.find_undeclared_variables(ENVIRONMENT.parse(value)))
    if isinstance(value, dict):
        return set().union(*(names_used(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(names_used(v) for v in value))
    return set()


def compile_tree(value: Any, field: str) -> Rendered:
    """Compile every template of a value tree once; return a function of the context."""
    if is_template(value):
        template = ENVIRONMENT.from_string(value)

        def render(context: Mapping[str, Any]) -> Any:
            try:
                return template.render(**context)
            except TemplateError as error:
                raise TemplateRenderError(f"{field}: {value!r} failed: {error}") from None

        return render
    if isinstance(value, dict):
        parts = {key: compile_tree(v, f"{field}.{key}") for key, v in value.items()}
        return lambda context: {key: part(context) for key, part in parts.items()}
    if isinstance(value, list):
        items = [compile_tree(v, f"{field}[{n}]") for n, v in enumerate(value)]
        return lambda context: [item(context) for item in items]
    return lambda context: value
