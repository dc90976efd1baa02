"""Workflow definitions and the registry that checks their action contracts.

A definition is plain data and functions of the decision document: it imports nothing of
the runner, so another durable engine can execute the same definitions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mutations.connectors import Change, known_platforms
from runs.retry import RetryPolicy

DecisionDoc = Mapping[str, Any]


class WorkflowDefinitionError(Exception):
    """A workflow that cannot be registered, with what to change."""


class Reversibility(StrEnum):
    REVERSIBLE = "reversible"
    COMPENSATABLE = "compensatable"
    IRREVERSIBLE = "irreversible"


@dataclass(frozen=True)
class Compensation:
    """How to undo a step: build the inverse of the change that was applied.

    ``build`` sees the applied change only; ``build_from_decision`` sees the decision too
    (YAML templates use it). Give exactly one.
    """

    id: str
    build: Callable[[Change], Change] | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 10.0  # seconds a platform call may take
    window: float = 30.0  # seconds from the first attempt after which it stops retrying
    build_from_decision: Callable[[DecisionDoc, Change], Change] | None = None

    def inverse(self, decision: DecisionDoc, applied: Change) -> Change:
        """Return the change that undoes ``applied``."""
        if self.build_from_decision is not None:
            return self.build_from_decision(decision, applied)
        assert self.build is not None, "register() checks that one builder is given"
        return self.build(applied)


@dataclass(frozen=True)
class Step:
    id: str
    build: Callable[[DecisionDoc], Change]
    compensation: Compensation | None = None
    no_rollback_reason: str = ""
    reversibility: Reversibility = Reversibility.COMPENSATABLE
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 10.0  # seconds a platform call may take
    platform: str = ""  # the platform the step changes, checked at registration when given


@dataclass(frozen=True)
class Workflow:
    id: str
    version: int
    decision_type: str
    steps: tuple[Step, ...]
    scope: Callable[[DecisionDoc], dict[str, dict[str, Any]]]
    validate_action: Callable[[Mapping[str, Any]], dict[str, str]]
    description: str = ""
    topic: str = ""  # what policies match on, e.g. "ads.budget"; the decision type by default
    source: str = "built in"  # where the definition came from: a plug-in module, a YAML file
    # The action a compensation drill proposes, given a name of the drill's own (e.g. to
    # name objects no one else uses); None: the workflow cannot be drilled.
    drill_action: Callable[[str], dict[str, Any]] | None = None
    # The objects a drill's run needs, by platform ({"target", "state"} each), created
    # on the sandbox platforms before the drill starts.
    drill_seed: Callable[[str], dict[str, list[dict[str, Any]]]] | None = None
    # The JSON Schema of its action, exactly what ``validate_action`` accepts (what agents
    # and generated clients are told to send; runs.workflows.action_schema). Read each time
    # a schema is built: the platforms an enum lists are loaded at start-up.
    action_json_schema: Callable[[], dict[str, Any]] | None = None

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(f"Workflow {self.id} v{self.version} has no step {step_id!r}.")

    @property
    def reversibility(self) -> str:
        """Return the least reversible of its steps' reversibilities."""
        order = list(Reversibility)
        return max((s.reversibility for s in self.steps), key=order.index, default="reversible")

    def contract(self, decision: DecisionDoc) -> dict[str, Any]:
        """Return the action contract the policy gate evaluates."""
        return {
            "workflow_id": self.id,
            "topic": self.topic or self.decision_type,
            "side_effect": bool(self.steps),
            "compensation_declared": all(s.compensation for s in self.steps),
            "rollback_supported": all(
                s.reversibility != Reversibility.IRREVERSIBLE for s in self.steps
            ),
            "reversibility": self.reversibility,
            "platforms": sorted({s.build(decision).platform for s in self.steps}),
        }


_REGISTRY: dict[tuple[str, int], Workflow] = {}


def register(workflow: Workflow) -> Workflow:
    """Add a workflow after checking that every step says how it is undone."""
    if not workflow.steps:
        raise WorkflowDefinitionError(f"Workflow {workflow.id} has no steps.")
    seen: set[str] = set()
    for step in workflow.steps:
        if step.id in seen:
            raise WorkflowDefinitionError(f"Workflow {workflow.id}: step id {step.id!r} repeats.")
        seen.add(step.id)
        if step.compensation is None and not step.no_rollback_reason:
            raise WorkflowDefinitionError(
                f"Workflow {workflow.id}: step {step.id!r} declares neither a compensation "
                "nor a no_rollback_reason. Add one of them."
            )
        if step.compensation is not None and step.reversibility == Reversibility.IRREVERSIBLE:
            raise WorkflowDefinitionError(
                f"Workflow {workflow.id}: step {step.id!r} is irreversible but declares a "
                "compensation; mark it compensatable or drop the compensation."
            )
        undo = step.compensation
        if undo is not None and (undo.build is None) == (undo.build_from_decision is None):
            raise WorkflowDefinitionError(
                f"Workflow {workflow.id}: step {step.id!r}: compensation {undo.id!r} needs "
                "exactly one of build or build_from_decision."
            )
        if step.platform and step.platform not in known_platforms():
            raise WorkflowDefinitionError(
                f"Workflow {workflow.id}: step {step.id!r} names platform {step.platform!r}, "
                f"which has no connector; known: {', '.join(known_platforms())}."
            )
    key = (workflow.id, workflow.version)
    if key in _REGISTRY and _REGISTRY[key] is not workflow:
        raise WorkflowDefinitionError(
            f"Workflow {workflow.id} v{workflow.version} is already registered; "
            "bump the version to change a definition."
        )
    _REGISTRY[key] = workflow
    return workflow


def registered() -> dict[tuple[str, int], Workflow]:
    """Return every registered workflow by (id, version)."""
    return dict(_REGISTRY)


def replace(workflow: Workflow) -> None:
    """Swap a registered definition for an equal one with other metadata (its source)."""
    _REGISTRY[(workflow.id, workflow.version)] = workflow


def unregister(workflow_id: str, version: int) -> None:
    _REGISTRY.pop((workflow_id, version), None)


def get_workflow(workflow_id: str, version: int) -> Workflow | None:
    return _REGISTRY.get((workflow_id, version))


def workflow_for(decision_type: str) -> Workflow | None:
    """Return the newest workflow serving a decision type."""
    matches = [w for w in _REGISTRY.values() if w.decision_type == decision_type]
    return max(matches, key=lambda w: w.version, default=None)


def latest_workflow(workflow_id: str) -> Workflow | None:
    versions = [w for (wid, _), w in _REGISTRY.items() if wid == workflow_id]
    return max(versions, key=lambda w: w.version, default=None)


def all_workflows() -> list[Workflow]:
    """Return the newest version of every registered workflow, by id."""
    ids = sorted({wid for wid, _ in _REGISTRY})
    return [w for w in (latest_workflow(wid) for wid in ids) if w is not None]


def decision_types() -> list[str]:
    return sorted({w.decision_type for w in _REGISTRY.values()})
