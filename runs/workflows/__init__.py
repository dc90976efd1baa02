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
    "Reversibility",
    "Step",
    "Workflow",
    "WorkflowDefinitionError",
    "decision_types",
    "get_workflow",
    "register",
    "workflow_for",
]
