"""YAML that remembers where each key was written, so every refusal of a team's file
(policies, platforms, workflows) names the line and the field."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True)
class Problem:
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}, " if self.line else ""
        return f"{where}{self.field}: {self.message}"


class FileInvalid(ValueError):
    """A file that cannot be used; ``problems`` says each thing to change and where."""

    def __init__(self, problems: list[Problem], *, source: str = "") -> None:
        self.problems = problems
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "; ".join(str(p) for p in problems))


class LineMapping(dict[str, Any]):
    """A YAML mapping that remembers its own line and the line of each key."""

    line: int = 0
    lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.lines.get(key, self.line)


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineMapping:
    loader.flatten_mapping(node)
    mapping = LineMapping()
    mapping.line = node.start_mark.line + 1
    mapping.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise yaml.MarkedYAMLError(
                problem=f"key {key!r} must be text", problem_mark=key_node.start_mark
            )
        if key in mapping:
            raise yaml.MarkedYAMLError(
                problem=f"key {key!r} appears twice (first on line {mapping.lines[key]})",
                problem_mark=key_node.start_mark,
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.lines[key] = line
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(
    text: str, *, source: str = "", invalid: Callable[..., FileInvalid] = FileInvalid
) -> Any:
    """Parse YAML whose mappings are LineMappings; a syntax error raises ``invalid`` with
    its line."""
    try:
        return yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        line = mark.line + 1 if mark else None
        raise invalid([Problem(line, "yaml", str(error.problem))], source=source) from None
    except yaml.YAMLError as error:
        raise invalid([Problem(None, "yaml", str(error))], source=source) from None


def unknown_keys(
    mapping: LineMapping, allowed: frozenset[str], field: str, problems: list[Problem]
) -> None:
    """Add a problem for each key of ``mapping`` that is not allowed, naming the allowed."""
    for key in mapping:
        if key not in allowed:
            where = f"{field}.{key}" if field else key
            problems.append(
                Problem(mapping.lines[key], where, f"unknown key; use {', '.join(sorted(allowed))}")
            )
