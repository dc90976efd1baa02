"""Compensation drills: a real run on sandbox platforms with a planned fault, then the
checks of its evidence (terminal state, LIFO compensations, net zero, idempotency, events).

Each drill gets a name of its own that its workflow's drill action uses to touch objects
no one else looks at (the built-in workflows: campaigns of a market of its own), so
drills never wait for one another. Sandbox HTTP platforms are drilled like the simulated
ones: the connector takes the planned fault before the call leaves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from controlplane.models import Drill, DrillPlan, Fault, Workspace
from controlplane.serializers import DecisionInSerializer
from controlplane.services import submit_decision
from mutations.connectors import get_connector
from mutations.connectors.base import PlatformError, ReportsOperations, SeedsObjects
from mutations.ids import new_id
from mutations.models import Mutation, RuntimeEvent, SandboxFault
from runs.models import RunStatus, WorkflowRun
from runs.workflows import Workflow
from runs.workflows.registry import all_workflows, latest_workflow

logger = logging.getLogger("controlplane.drills")

DRILL_SURFACE = "drill"
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
    if fault == Fault.COMPENSATION_FAILS and _undone_before(workflow, step_id) is None:
        raise DrillRefused(
            f"A failing compensation needs an earlier step with a compensation before {step_id}."
        )
    return workflow


def _undone_before(workflow: Workflow, step_id: str) -> str | None:
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
) -> Drill:
    """Submit a drill decision with its planned fault; the runners execute it as any other."""
    workflow = _plan(workflow_id, step_id, fault)
    if workflow.drill_action is None:
        raise DrillRefused(
            f"{workflow_id} declares no drill action: add drill: {{action: ...}} to its "
            "definition (drill_action= in Python) with values a drill may use."
        )
    drill_id = new_id("drl")
    name = f"drill-{drill_id[-12:].lower()}"
    document = {
        "id": new_id("dec"),
        "type": workflow.decision_type,
        "priority": "low",
        "confidence": 0.99,
        "summary": f"Drill: {workflow.id} with {step_id} failing ({Fault(fault).label})",
        "reasoning": f"Compensation drill {drill_id} started by {started_by}.",
        "auto_executable": True,
        "action": {**workflow.drill_action(name), "type": workflow.decision_type},
        "computed_at": timezone.now().strftime("%Y-%m-%dT%H:%M:%SZ"),
        "policy_version": "drill",
    }
    serializer = DecisionInSerializer(data=document)
    if not serializer.is_valid():
        raise DrillRefused(f"The drill's decision is not valid: {serializer.errors}")
    platforms = _platforms(workflow, document)
    for platform in platforms:
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
            surface=DRILL_SURFACE,
            user_id=user_id,
            drill=True,
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
    key = f"{document['id']}-attempt-1"
    platform = workflow.step(step_id).build(document).platform

    def plan(platform: str, kind: str, prefix: str, **fields: Any) -> None:
        SandboxFault.objects.create(
            org_id=workspace.org_id, platform=platform, kind=kind, key_prefix=prefix, **fields
        )

    step_key = f"{key}:{step_id}"
    match fault:
        case Fault.RATE_LIMIT:
            plan(platform, SandboxFault.Kind.RATE_LIMIT, step_key, retry_after_seconds=1)
        case Fault.FATAL:
            plan(platform, SandboxFault.Kind.FATAL, step_key)
        case Fault.TIMEOUT:
            plan(platform, SandboxFault.Kind.TIMEOUT, step_key)
        case Fault.TRANSIENT_BURST:
            plan(platform, SandboxFault.Kind.TRANSIENT, step_key, remaining=2)
        case Fault.AMBIGUOUS:
            plan(platform, SandboxFault.Kind.AMBIGUOUS, step_key, remaining=1)
        case Fault.COMPENSATION_FAILS:
            plan(platform, SandboxFault.Kind.FATAL, step_key)
            undone = _undone_before(workflow, step_id)
            assert undone is not None  # _plan checked it
            undo_platform = workflow.step(undone).build(document).platform
            plan(undo_platform, SandboxFault.Kind.TRANSIENT, f"{key}:{undone}:compensate")


# ---- verification ---------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    passed: bool
    evidence: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "evidence": self.evidence}


def verify_drill(drill: Drill) -> Drill:
    """Check a finished drill's evidence and store the report; an unfinished one is left."""
    run: WorkflowRun | None = drill.run
    if run is None or not run.is_terminal or drill.verified_at is not None:
        return drill
    mutations = list(Mutation.objects.filter(run=run).order_by("created_at", "mutation_id"))
    events = list(RuntimeEvent.objects.filter(decision_id=drill.decision_id))
    checks = [
        Check(
            "terminal state",
            run.status == drill.expected_status,
            f"expected {drill.expected_status}, the run ended {run.status}",
        ),
        _lifo_check(drill, mutations),
        _net_zero_check(drill, run),
        _idempotency_check(run, mutations),
        _evidence_check(drill, run, mutations, events),
    ]
    drill.checks = [c.as_dict() for c in checks]
    drill.passed = all(c.passed for c in checks)
    drill.verified_at = timezone.now()
    drill.save(update_fields=["checks", "passed", "verified_at"])
    return drill


def _lifo_check(drill: Drill, mutations: list[Mutation]) -> Check:
    applied = [m.mutation_id for m in mutations if m.status == Mutation.Status.SUCCESS]
    undone = [m.compensates_id for m in mutations if m.status == Mutation.Status.ROLLED_BACK]
    expected = list(reversed(applied))
    name = "one compensation per applied step, in reverse order"
    if drill.expected_status == RunStatus.COMPENSATED:
        return Check(name, undone == expected, f"expected {expected}, compensated {undone}")
    if drill.expected_status == RunStatus.COMPENSATION_FAILED:
        in_order = undone == [m for m in expected if m in undone] and len(set(undone)) == len(
            undone
        )
        return Check(name, in_order, f"applied {applied}; compensated {undone} (one failed)")
    return Check(name, not undone, f"no compensation expected; compensated {undone}")


def _net_zero_check(drill: Drill, run: WorkflowRun) -> Check:
    name = "before hash equals after hash"
    hashes = f"before {run.before_state_hash}, after {run.after_state_hash}"
    if drill.expected_status in (RunStatus.COMPENSATED, RunStatus.FAILED):
        return Check(name, run.before_state_hash == run.after_state_hash, hashes)
    return Check(name, True, f"not expected for a {drill.expected_status} run ({hashes})")


def _idempotency_check(run: WorkflowRun, mutations: list[Mutation]) -> Check:
    """Each key the log records as applied is applied once, as its platform reports."""
    keys = [m.idempotency_key for m in mutations if m.status != Mutation.Status.FAILED]
    platform_of = {m.idempotency_key: m.platform for m in mutations}
    reported: dict[str, int] = {}
    silent = []
    for platform in sorted(set(platform_of.values()) | set(run.scope)):
        connector = get_connector(platform)
        answer = None
        if isinstance(connector, ReportsOperations):
            answer = connector.applied_keys(org_id=run.org_id, key_prefix=run.idempotency_key)
        if answer is None:
            silent.append(platform)
        else:
            reported.update(answer)
    expected = sorted(k for k in keys if platform_of[k] not in silent)
    once = len(keys) == len(set(keys)) and sorted(reported) == expected
    evidence = (
        f"{len(reported)} key(s) applied once each, {sum(reported.values())} replayed "
        f"call(s): {', '.join(sorted(reported))}"
    )
    if silent:
        evidence += f"; not reported by {', '.join(silent)}: checked against the log only"
    return Check("every idempotency key applied at most once", once, evidence)


def _evidence_check(
    drill: Drill, run: WorkflowRun, mutations: list[Mutation], events: list[RuntimeEvent]
) -> Check:
    kinds = {e.kind for e in events}
    needed = {"decision_received", "policy_evaluated", "run_started", "run_finished"}
    applied = {e.payload.get("mutation_id") for e in events if e.kind == "compensation_applied"}
    undos = {m.mutation_id for m in mutations if m.status == Mutation.Status.ROLLED_BACK}
    missing = sorted(needed - kinds) + sorted(undos - applied)
    policy = next((e for e in events if e.kind == "policy_evaluated"), None)
    return Check(
        "evidence timeline complete",
        not missing,
        f"dispatched by {run.requested_by}; policy matched "
        f"{', '.join(policy.policy_ids) if policy and policy.policy_ids else 'no rule'}; "
        f"compensations recorded: {len(undos & applied)} of {len(undos)}"
        + (f"; missing: {', '.join(missing)}" if missing else ""),
    )


def verify_finished_drills() -> int:
    """Verify every drill whose run has come to rest; return how many were verified."""
    pending = Drill.objects.filter(verified_at__isnull=True, run__finished_at__isnull=False)
    verified = 0
    for drill in pending.select_related("run")[:50]:
        verify_drill(drill)
        verified += 1
    return verified


# ---- many drills ---------------------------------------------------------------------------


def drill_everything(
    *, workspace: Workspace, started_by: str, user_id: int | None = None
) -> list[Drill]:
    """For each workflow: a drill failing each step in turn, and one whose compensation fails."""
    drills = []
    for workflow in all_workflows():
        if workflow.drill_action is None or not _all_sandbox(workflow):
            continue
        for step in workflow.steps:
            drills.append(
                start_drill(
                    workspace=workspace,
                    workflow_id=workflow.id,
                    step_id=step.id,
                    fault=Fault.FATAL,
                    started_by=started_by,
                    user_id=user_id,
                )
            )
        last = workflow.steps[-1].id
        if _undone_before(workflow, last) is not None:
            drills.append(
                start_drill(
                    workspace=workspace,
                    workflow_id=workflow.id,
                    step_id=last,
                    fault=Fault.COMPENSATION_FAILS,
                    started_by=started_by,
                    user_id=user_id,
                )
            )
    return drills


def _all_sandbox(workflow: Workflow) -> bool:
    platforms = {step.platform for step in workflow.steps if step.platform}
    return all(get_connector(platform).sandbox for platform in platforms)


def start_due_drills(now: datetime | None = None) -> int:
    """Start each scheduled drill that is due, once however many runners ask."""
    now = now or timezone.now()
    started = 0
    with transaction.atomic():
        due = DrillPlan.objects.select_for_update(skip_locked=True, of=("self",)).filter(
            enabled=True, next_run_at__lte=now
        )
        for plan in due.select_related("workspace")[:10]:
            try:
                start_drill(
                    workspace=plan.workspace,
                    workflow_id=plan.workflow_id,
                    step_id=plan.step_id,
                    fault=plan.fault,
                    started_by=f"schedule:{plan.created_by}",
                    plan=plan,
                )
                started += 1
            except DrillRefused as refused:
                logger.warning("drill plan %s cannot start: %s", plan.pk, refused)
            plan.next_run_at = max(plan.next_run_at, now) + timedelta(seconds=plan.every_seconds)
            plan.save(update_fields=["next_run_at"])
    return started
