"""A finished drill's evidence, checked: terminal state, LIFO compensations, net zero,
idempotency, a complete timeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from controlplane.models import Drill
from controlplane.notify.outbox import enqueue
from mutations.connectors import get_connector
from mutations.connectors.base import ReportsOperations
from mutations.models import Mutation, RuntimeEvent
from runs.keys import run_calls_prefix
from runs.models import RunStatus, WorkflowRun


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
    with transaction.atomic():
        drill.save(update_fields=["checks", "passed", "verified_at"])
        if not drill.passed:
            enqueue(drill.org_id, "drill.failed", _failed_payload(drill, run))
    return drill


def _failed_payload(drill: Drill, run: WorkflowRun) -> dict[str, Any]:
    failed = [c["name"] for c in drill.checks if not c["passed"]]
    return {
        "drill_id": drill.id,
        "decision_id": drill.decision_id,
        "run_id": run.run_id,
        "run_status": run.status,
        "failed_checks": failed,
        "summary": f"Drill {drill.id} failed: {', '.join(failed)}",
    }


def _steps(ids: list[str]) -> str:
    """Return steps in order as a person reads them: "a → b", or "none"."""
    return " → ".join(ids) or "none"


def _lifo_check(drill: Drill, mutations: list[Mutation]) -> Check:
    """Check that each applied step was compensated once, the last applied first. The
    evidence names steps in the order they happened."""
    step_of = {m.mutation_id: m.step_id for m in mutations}
    applied = [m.mutation_id for m in mutations if m.status == Mutation.Status.SUCCESS]
    undone = [m.compensates_id for m in mutations if m.status == Mutation.Status.ROLLED_BACK]
    expected = list(reversed(applied))
    done = f"applied {_steps([step_of[m] for m in applied])}; " + (
        f"compensated {_steps([step_of.get(m or '', str(m)) for m in undone])}"
    )
    name = "one compensation per applied step, in reverse order"
    if drill.expected_status == RunStatus.COMPENSATED:
        wanted = _steps([step_of[m] for m in expected])
        return Check(name, undone == expected, f"{done} (expected {wanted})")
    if drill.expected_status == RunStatus.COMPENSATION_FAILED:
        in_order = undone == [m for m in expected if m in undone] and len(set(undone)) == len(
            undone
        )
        return Check(name, in_order, f"{done} (expected in reverse order, one left undone)")
    return Check(name, not undone, f"{done} (no compensation expected)")


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
            answer = connector.applied_keys(
                org_id=run.org_id, key_prefix=run_calls_prefix(run.idempotency_key)
            )
        if answer is None:
            silent.append(platform)
        else:
            reported.update(answer)
    expected = sorted(k for k in keys if platform_of[k] not in silent)
    once = len(keys) == len(set(keys)) and sorted(reported) == expected
    replayed = sum(reported.values())
    evidence = (
        f"{_count(len(reported), 'key')} applied once each; {_count(replayed, 'call')} "
        + ("replayed, answered with the first result" if replayed else "replayed")
        + (f". Keys: {', '.join(sorted(reported))}" if reported else "")
    )
    if silent:
        evidence += f"; not reported by {', '.join(silent)}: checked against the log only"
    return Check("every idempotency key applied at most once", once, evidence)


def _count(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


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
    """Verify every drill whose run has come to rest, each by one runner however many
    ask; return how many were verified."""
    with transaction.atomic():
        pending = Drill.objects.select_for_update(skip_locked=True, of=("self",)).filter(
            verified_at__isnull=True, run__finished_at__isnull=False
        )
        drills = list(pending.select_related("run")[:50])
        for drill in drills:
            verify_drill(drill)
    return len(drills)
