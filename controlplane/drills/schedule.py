"""Many drills: every step of every workflow, and the plans a runner starts when due."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from controlplane.drills.start import DrillRefused, start_drill, undone_before
from controlplane.models import Drill, DrillPlan, Fault, Workspace
from mutations.connectors import get_connector
from runs.workflows import Workflow
from runs.workflows.registry import all_workflows

logger = logging.getLogger("controlplane.drills")


def drill_everything(
    *,
    workspace: Workspace,
    started_by: str,
    user_id: int | None = None,
    engine: str | None = None,
) -> list[Drill]:
    """For each workflow: a drill failing each step in turn, and one whose compensation
    fails; their runs go to ``engine`` (default: BACKSTOP_ENGINE)."""
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
                    engine=engine,
                )
            )
        last = workflow.steps[-1].id
        if undone_before(workflow, last) is not None:
            drills.append(
                start_drill(
                    workspace=workspace,
                    workflow_id=workflow.id,
                    step_id=last,
                    fault=Fault.COMPENSATION_FAILS,
                    started_by=started_by,
                    user_id=user_id,
                    engine=engine,
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
