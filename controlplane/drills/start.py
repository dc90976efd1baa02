"""Compensation drills: a real run on sandbox platforms with a planned fault, then the
checks of its evidence (terminal state, LIFO compensations, net zero, idempotency, events).

Each drill gets a name of its own that its workflow's drill action uses to touch objects
no one else looks at (the built-in workflows: campaigns of a market of its own), so
drills never wait for one another. Sandbox HTTP platforms are drilled like the simulated
ones: the connector takes the planned fault before the call leaves.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from controlplane.intake.serializers import DecisionInSerializer
from controlplane.intake.submit import submit_decision
from controlplane.models import Drill, DrillPlan, Fault, Workspace
from mutations.connectors import get_connector
from mutations.connectors.base import PlatformError, SeedsObjects
from mutations.ids import new_id
from mutations.models import SandboxFault
from mutations.services import Surface
from mutations.timestamps import UTC_FORMAT
from runs.keys import FIRST_ATTEMPT, compensation_key, run_key, step_calls_prefix
from runs.models import RunStatus
from runs.workflows import Workflow
from runs.workflows.registry import latest_workflow

RECOVERS = (Fault.TRANSIENT_BURST, Fault.AMBIGUOUS)


class DrillRefused(Exception):
    """The drill cannot be planned; the message says why and what to change."""


def expected_status(workflow: Workflow, step_id: str, fault: str) -> str:
    """Return where a run of this drill must come to rest."""
    if fault in RECOVERS:
        return RunStatus.COMPLETED
    if fault == Fault.COMPENSATION_FAILS:
        return RunStatus.COMPENSATION_FAILED
    before = workflow.steps[: [s.id for s in workflow.steps].index(step_id)]
    if not before:
        return RunStatus.FAILED
    if any(step.compensation is None for step in before):
        return RunStatus.COMPENSATION_FAILED
    return RunStatus.COMPENSATED


def _plan(workflow_id: str, step_id: str, fault: str) -> Workflow:
    workflow = latest_workflow(workflow_id)
    if workflow is None:
        raise DrillRefused(f"No workflow {workflow_id!r} is registered.")
    ids = [s.id for s in workflow.steps]
    if step_id not in ids:
        raise DrillRefused(f"{workflow_id} has no step {step_id!r}; its steps: {', '.join(ids)}.")
    if fault not in Fault.values:
        raise DrillRefused(f"Unknown fault {fault!r}; use one of {', '.join(Fault.values)}.")
    if fault == Fault.COMPENSATION_FAILS and undone_before(workflow, step_id) is None:
        raise DrillRefused(
            f"A failing compensation needs an earlier step with a compensation before {step_id}."
        )
    return workflow


def undone_before(workflow: Workflow, step_id: str) -> str | None:
    """Return the step whose compensation runs first when ``step_id`` fails."""
    before = workflow.steps[: [s.id for s in workflow.steps].index(step_id)]
    return next((s.id for s in reversed(before) if s.compensation is not None), None)


def start_drill(
    *,
    workspace: Workspace,
    workflow_id: str,
    step_id: str,
    fault: str,
    started_by: str,
    user_id: int | None = None,
    plan: DrillPlan | None = None,
    engine: str | None = None,
) -> Drill:
    """Submit a drill decision with its planned fault; the runners of ``engine`` (default:
    BACKSTOP_ENGINE) execute it as any other."""
    workflow = _plan(workflow_id, step_id, fault)
    drill_id = new_id("drl")
    name = f"drill-{drill_id[-12:].lower()}"
    document = _drill_decision(
        workflow, step_id=step_id, fault=fault, drill_id=drill_id, name=name, started_by=started_by
    )
    for platform in _platforms(workflow, document):
        if not get_connector(platform).sandbox:
            raise DrillRefused(
                f"Drills only ever touch sandbox platforms; {platform!r} is a live connector."
            )
    _seed(workspace, workflow, name)
    with transaction.atomic():
        _plan_faults(workspace, workflow, document, step_id, fault)
        submission = submit_decision(
            workspace=workspace,
            document=document,
            requested_by=started_by,
            surface=Surface.DRILL,
            user_id=user_id,
            drill=True,
            engine=engine,
        )
        return Drill.objects.create(
            id=drill_id,
            org_id=workspace.org_id,
            plan=plan,
            workflow_id=workflow.id,
            workflow_version=workflow.version,
            step_id=step_id,
            fault=fault,
            expected_status=expected_status(workflow, step_id, fault),
            started_by=started_by,
            started_at=timezone.now(),
            decision=submission.decision,
            run=submission.decision.runs.get(),
        )


def _drill_decision(
    workflow: Workflow, *, step_id: str, fault: str, drill_id: str, name: str, started_by: str
) -> dict[str, Any]:
    """Return the valid decision a drill submits, built from its workflow's drill action."""
    if workflow.drill_action is None:
        raise DrillRefused(
            f"{workflow.id} declares no drill action: add drill: {{action: ...}} to its "
            "definition (drill_action= in Python) with values a drill may use."
        )
    document = {
        "id": new_id("dec"),
        "type": workflow.decision_type,
        "priority": "low",
        "confidence": 0.99,
        "summary": f"Drill: {workflow.id} with {step_id} failing ({Fault(fault).label})",
        "reasoning": f"Compensation drill {drill_id} started by {started_by}.",
        "auto_executable": True,
        "action": {**workflow.drill_action(name), "type": workflow.decision_type},
        "computed_at": timezone.now().strftime(UTC_FORMAT),
        "policy_version": "drill",
    }
    serializer = DecisionInSerializer(data=document)
    if not serializer.is_valid():
        raise DrillRefused(f"The drill's decision is not valid: {serializer.errors}")
    return document


def _seed(workspace: Workspace, workflow: Workflow, name: str) -> None:
    """Create the objects the drill's run needs on its sandbox platforms."""
    seeds = workflow.drill_seed(name) if workflow.drill_seed is not None else {}
    for platform, objects in seeds.items():
        connector = get_connector(platform)
        if not isinstance(connector, SeedsObjects):
            raise DrillRefused(f"{platform!r} cannot create the objects a drill needs.")
        try:
            connector.seed(org_id=workspace.org_id, objects=objects)
        except PlatformError as error:
            raise DrillRefused(f"The drill's objects could not be created: {error}") from None


def _platforms(workflow: Workflow, document: dict[str, Any]) -> list[str]:
    """Return every platform a drill's run may touch: its steps' and its scope's."""
    steps = {step.build(document).platform for step in workflow.steps}
    return sorted(steps | set(workflow.scope(document)))


def _plan_faults(
    workspace: Workspace, workflow: Workflow, document: dict[str, Any], step_id: str, fault: str
) -> None:
    key = run_key(document["id"], FIRST_ATTEMPT)
    platform = workflow.step(step_id).build(document).platform

    def plan(platform: str, kind: str, prefix: str, **fields: Any) -> None:
        SandboxFault.objects.create(
            org_id=workspace.org_id, platform=platform, kind=kind, key_prefix=prefix, **fields
        )

    calls = step_calls_prefix(key, step_id)
    match fault:
        case Fault.RATE_LIMIT:
            plan(platform, SandboxFault.Kind.RATE_LIMIT, calls, retry_after_seconds=1)
        case Fault.FATAL:
            plan(platform, SandboxFault.Kind.FATAL, calls)
        case Fault.TIMEOUT:
            plan(platform, SandboxFault.Kind.TIMEOUT, calls)
        case Fault.TRANSIENT_BURST:
            plan(platform, SandboxFault.Kind.TRANSIENT, calls, remaining=2)
        case Fault.AMBIGUOUS:
            plan(platform, SandboxFault.Kind.AMBIGUOUS, calls, remaining=1)
        case Fault.COMPENSATION_FAILS:
            plan(platform, SandboxFault.Kind.FATAL, calls)
            undone = undone_before(workflow, step_id)
            assert undone is not None  # _plan checked it
            undo_platform = workflow.step(undone).build(document).platform
            plan(undo_platform, SandboxFault.Kind.TRANSIENT, compensation_key(key, undone))
