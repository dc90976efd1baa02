"""A team's own platforms, plug-ins and YAML workflows, loaded at start-up by every process.

Order matters: the platforms file first (workflows name its platforms), then plug-ins
(which may add connectors and workflows), then the workflows directory.
"""

from __future__ import annotations

import dataclasses
import logging
from importlib import import_module
from pathlib import Path

from django.conf import settings

from mutations.connectors import known_platforms, register_connector
from mutations.connectors.http import HttpConnector
from mutations.connectors.platforms_file import load_platforms_file
from mutations.connectors.sandbox import SANDBOX_PLATFORMS
from mutations.yamltext import FileInvalid
from runs.exceptions import ExtensionError
from runs.workflows import registry
from runs.workflows.registry import WorkflowDefinitionError, register
from runs.workflows.yaml_workflows import load_workflows_dir

logger = logging.getLogger("runs.extensions")


def load_extensions() -> None:
    """Load what the settings name, or raise ExtensionError with one clear message."""
    if settings.BACKSTOP_PLATFORMS_FILE:
        load_platforms(Path(settings.BACKSTOP_PLATFORMS_FILE))
    for module in settings.BACKSTOP_PLUGINS:
        load_plugin(module)
    if settings.BACKSTOP_WORKFLOWS_DIR:
        load_yaml_workflows(Path(settings.BACKSTOP_WORKFLOWS_DIR))


def load_platforms(path: Path) -> list[str]:
    """Register an HTTP connector for each platform the file declares; return their names."""
    try:
        platforms = load_platforms_file(path, reserved=frozenset(SANDBOX_PLATFORMS))
    except FileInvalid as error:
        raise ExtensionError(f"BACKSTOP_PLATFORMS_FILE: {error}") from None
    for platform in platforms:
        register_connector(HttpConnector(platform))
    return [p.name for p in platforms]


def load_plugin(module: str) -> None:
    """Import a plug-in module; the workflows it registers are marked with its name."""
    before = set(registry.registered())
    try:
        import_module(module)
    except WorkflowDefinitionError as error:
        raise ExtensionError(f"plug-in {module}: {error}") from None
    except ModuleNotFoundError as error:
        raise ExtensionError(
            f"plug-in {module} (BACKSTOP_PLUGINS) cannot be imported: {error}. "
            "Check the module path and that its package is installed or on PYTHONPATH."
        ) from None
    except Exception as error:
        raise ExtensionError(
            f"plug-in {module} failed while importing: {type(error).__name__}: {error}"
        ) from error
    for key in set(registry.registered()) - before:
        registry.replace(
            dataclasses.replace(registry.registered()[key], source=f"plug-in {module}")
        )
    logger.debug("loaded plug-in %s", module)


def load_yaml_workflows(directory: Path) -> None:
    """Register every workflow file of a directory."""
    try:
        workflows = load_workflows_dir(directory, platforms=frozenset(known_platforms()))
    except FileInvalid as error:
        raise ExtensionError(f"BACKSTOP_WORKFLOWS_DIR: {error}") from None
    for workflow in workflows:
        try:
            register(workflow)
        except WorkflowDefinitionError as error:
            raise ExtensionError(f"{workflow.source}: {error}") from None
