"""Policy versions of a workspace: evaluate the active one, dry-run and activate others."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from controlplane.models import (
    PolicyActivation,
    PolicyEvaluation,
    PolicyVersion,
    Workspace,
)
from controlplane.policy.rules import (
    FAIL_CLOSED,
    Evaluation,
    Policy,
    PolicyInvalid,
    PolicyProblem,
    parse_policy,
)
from mutations.rows import table

DRY_RUN_DECISIONS = 500


def evaluate_policy(
    workspace: Workspace, inputs: dict[str, Any]
) -> tuple[PolicyVersion | None, Evaluation]:
    """Evaluate the workspace's active policy; with none active, hold (fail closed)."""
    # Every decision reads it: one plain statement (at most one version is active).
    found = PolicyVersion.objects.raw(
        f"SELECT * FROM {table(PolicyVersion)} WHERE workspace_id = %s AND is_active",
        [workspace.id],
    )
    active = next(iter(found), None)
    if active is None:
        return None, Evaluation(FAIL_CLOSED, [], [])
    return active, _parsed(active.text).evaluate(inputs)


@functools.lru_cache(maxsize=32)
def _parsed(text: str) -> Policy:
    return parse_policy(text)


def activate_policy(*, workspace: Workspace, text: str, activated_by: str) -> PolicyVersion:
    """Store a policy text and make it the workspace's active version.

    An invalid text raises PolicyInvalid and the active version stays as it was.
    """
    policy = parse_policy(text)
    digest = hashlib.sha256(text.encode()).hexdigest()
    with transaction.atomic():
        version, _ = PolicyVersion.objects.select_for_update().get_or_create(
            workspace=workspace,
            version=policy.version,
            defaults={"org_id": workspace.org_id, "text": text, "sha256": digest},
        )
        if version.sha256 != digest:
            raise PolicyInvalid(
                [
                    PolicyProblem(
                        None,
                        "version",
                        f"{policy.version} is already stored with a different text; "
                        "give the new text a new version",
                    )
                ]
            )
        if version.is_active:
            return version
        now = timezone.now()
        PolicyVersion.objects.filter(workspace=workspace, is_active=True).update(is_active=False)
        version.is_active = True
        version.activated_at = now
        version.activated_by = activated_by
        version.save(update_fields=["is_active", "activated_at", "activated_by"])
        PolicyActivation.objects.create(
            policy=version,
            workspace=workspace,
            activated_by=activated_by,
            activated_at=now,
            sha256=digest,
        )
    return version


@dataclass(frozen=True)
class Difference:
    evaluation: PolicyEvaluation
    candidate: Evaluation


def dry_run(
    *, workspace: Workspace, text: str, limit: int = DRY_RUN_DECISIONS
) -> tuple[int, list[Difference]]:
    """Return how many recent decisions were replayed and those the text decides otherwise.

    Raises PolicyInvalid for an invalid text.
    """
    policy = parse_policy(text)
    recent = list(
        PolicyEvaluation.objects.filter(decision__workspace=workspace)
        .select_related("decision")
        .order_by("-decision__received_at")[:limit]
    )
    differences = []
    for evaluation in recent:
        candidate = policy.evaluate(evaluation.inputs)
        if candidate.outcome != evaluation.outcome:
            differences.append(Difference(evaluation=evaluation, candidate=candidate))
    return len(recent), differences
