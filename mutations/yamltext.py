"""YAML that remembers where each key was written, so every refusal of a team's file
(policies, platforms, workflows) names the line and the field."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from itertools import groupby
from pathlib import Path
from typing import Any

import yaml

_MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Problem:
    """One thing to change in a file: where (line, dotted field) and what."""

    line: int | None
    field: str
    message: str
    source: str = ""  # the file, when problems of several files are reported together

    def __str__(self) -> str:
        prefix = f"{self.source}: " if self.source else ""
        return prefix + self.located()

    def located(self) -> str:
        """Return the problem without its file: "line N, field: message"."""
        where = f"line {self.line}, " if self.line else ""
        return f"{where}{self.field}: {self.message}"


class FileInvalid(ValueError):
    """A file that cannot be used; ``problems`` says each thing to change and where."""

    def __init__(self, problems: Iterable[Problem], *, source: str = "") -> None:
        self.source = source
        self.problems = [
            p if p.source or not source else replace(p, source=source) for p in problems
        ]
        super().__init__(_describe(self.problems))


def _describe(problems: list[Problem]) -> str:
    """Name each file once: "a.yaml: line 3, id: ...; line 5, version: ...; b.yaml: ..."."""
    parts = []
    for source, group in groupby(problems, key=lambda p: p.source):
        text = "; ".join(p.located() for p in group)
        parts.append(f"{source}: {text}" if source else text)
    return "; ".join(parts)


class LineMapping(dict[str, Any]):
    """A YAML mapping that remembers its own line and the line of each key."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.line = 0
        self.lines: dict[str, int] = {}

    def line_of(self, key: str, default: int | None = None) -> int:
        """Return the line of ``key``; where it is missing, ``default`` or the mapping's."""
        return self.lines.get(key, self.line if default is None else default)


class _LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LineMapping:
    own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE_TAG)
    loader.flatten_mapping(node)
    merged = len(node.value) - own  # `<<: *defaults` pairs come first; own keys override them
    mapping = LineMapping()
    mapping.line = node.start_mark.line + 1
    own_keys: set[str] = set()
    for position, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise yaml.MarkedYAMLError(
                problem=f"key {key!r} must be text; quote it", problem_mark=key_node.start_mark
            )
        if position >= merged:
            if key in own_keys:
                raise yaml.MarkedYAMLError(
                    problem=f"key {key!r} appears twice (first on line {mapping.lines[key]})",
                    problem_mark=key_node.start_mark,
                )
            own_keys.add(key)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.lines[key] = key_node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def read_file(path: Path) -> str:
    """Return a file's text, or raise FileInvalid naming the file and why it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
        problem = Problem(None, "file", f"cannot be read: {reason or error}")
        raise FileInvalid([problem], source=str(path)) from None


def load_yaml(
    text: str, *, source: str = "", invalid: Callable[..., FileInvalid] = FileInvalid
) -> Any:
    """Parse YAML whose mappings are LineMappings; a syntax error raises ``invalid`` with
    its line."""
    try:
        return yaml.load(text, Loader=_LineLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else None
        message = str(error.problem or error.context)
        raise invalid([Problem(line, "yaml", message)], source=source) from None
    except yaml.YAMLError as error:
        raise invalid([Problem(None, "yaml", str(error))], source=source) from None
    except RecursionError:
        raise invalid([Problem(None, "yaml", "nested too deeply")], source=source) from None


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
