"""What a workflow definition is made of, and the registry plug-ins add theirs to."""

from runs.retry import RetryPolicy
from runs.workflows.registry import (
    Compensation,
    Reversibility,
    Step,
    Workflow,
    WorkflowDefinitionError,
    decision_types,
    get_workflow,
    register,
    workflow_for,
)

__all__ = [
    "Compensation",
    "RetryPolicy",
    "Reversibility",
    "Step",
    "Workflow",
    "WorkflowDefinitionError",
    "decision_types",
    "get_workflow",
    "register",
    "workflow_for",
]
