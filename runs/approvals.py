"""Held runs: a person approves or rejects them, or they expire.

The caller checks the person's role; this module enforces the rest: one vote per
approver, the number of distinct approvers the policy asked for (concurrent clicks
dispatch the run once: votes are counted under the approval's row lock), separation of
duties, the payload hash the approval is bound to, and the time limit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from mutations.models import RuntimeEvent
from mutations.services import Surface
from runs.events import record_run_event
from runs.models import Approval, ApprovalVote, RunStatus, WorkflowRun
from runs.wakeup import notify_runners


class ApprovalRefused(Exception):
    """The approval cannot be given or refused; ``conflict`` is False for a forbidden actor."""

    def __init__(self, message: str, *, conflict: bool = True) -> None:
        super().__init__(message)
        self.conflict = conflict


def approval_ttl() -> timedelta:
    return timedelta(seconds=settings.BACKSTOP_APPROVAL_TTL_SECONDS)


def request_approval(
    run: WorkflowRun,
    *,
    payload_hash: str,
    required: int = 1,
    approver_roles: tuple[str, ...] = (),
) -> Approval:
    """Hold ``run`` until ``required`` distinct approvers (of ``approver_roles``, if any)
    approve ``payload_hash``."""
    now = timezone.now()
    return Approval.objects.create(
        org_id=run.org_id,
        run=run,
        payload_hash=payload_hash,
        requested_at=now,
        expires_at=now + approval_ttl(),
        required=required,
        approver_roles=list(approver_roles),
    )


def decide(
    *,
    run_id: str,
    org_id: str,
    approve: bool,
    user_id: int,
    actor: str,
    payload_hash: str,
    surface: Surface,
    comment: str = "",
) -> Approval:
    """Record a person's vote on a held run: the run is dispatched by the vote that
    completes the approvals it needs, rejected by the first vote against it."""
    refuse_if_expired(run_id=run_id, org_id=org_id)
    with transaction.atomic():
        # The row lock orders concurrent votes: each one counts those before it.
        approval = (
            Approval.objects.select_for_update(of=("self",))
            .select_related("run")
            .get(run_id=run_id, org_id=org_id)
        )
        now = timezone.now()
        _refuse_unless_decidable(approval, actor=actor, payload_hash=payload_hash, now=now)
        if approval.votes.filter(user_id=user_id).exists():
            raise ApprovalRefused(
                f"You already approved this run; it needs {approval.approvals_missing} more "
                "from other approvers."
            )
        verdict = ApprovalVote.Verdict.APPROVE if approve else ApprovalVote.Verdict.REJECT
        ApprovalVote.objects.create(
            approval=approval,
            user_id=user_id,
            actor=actor,
            verdict=verdict,
            payload_hash=payload_hash,
            comment=comment,
            decided_at=now,
        )
        given = approval.approvals_given
        if approve and given < approval.required:
            _record_vote(
                approval,
                user_id=user_id,
                actor=actor,
                surface=surface,
                given=given,
                comment=comment,
            )
            return approval
        approval.status = Approval.Status.APPROVED if approve else Approval.Status.REJECTED
        approval.decided_by_id = user_id
        approval.decided_at = now
        approval.comment = comment
        approval.save(update_fields=["status", "decided_by", "decided_at", "comment"])
        _dispatch_or_reject(approval, user_id=user_id, actor=actor, surface=surface, now=now)
    return approval


def refuse_if_expired(*, run_id: str, org_id: str) -> None:
    """End the run's approval if it ran out of time and raise ApprovalRefused. Call it
    outside the transaction of the vote: the expiry is kept although the vote is refused."""
    now = timezone.now()
    with transaction.atomic():
        approval = (
            Approval.objects.select_for_update(of=("self",))
            .select_related("run")
            .filter(
                run_id=run_id, org_id=org_id, status=Approval.Status.PENDING, expires_at__lte=now
            )
            .first()
        )
        if approval is None:
            return
        _expire([approval], now)
    raise ApprovalRefused(f"The approval expired at {approval.expires_at:%Y-%m-%d %H:%M}Z.")


def _record_vote(
    approval: Approval, *, user_id: int, actor: str, surface: Surface, given: int, comment: str
) -> None:
    """Record an approval that leaves the run held for more approvers."""
    record_run_event(
        approval.run,
        RuntimeEvent.Kind.APPROVAL_DECIDED,
        surface=surface,
        user_id=user_id,
        delta_summary=f"{actor} approved the run: {given} of {approval.required} approvals",
        payload=_vote_payload(
            approval, decision=Approval.Status.PENDING, given=given, comment=comment
        ),
    )


def _vote_payload(
    approval: Approval, *, decision: str, given: int, comment: str
) -> dict[str, object]:
    """Return what an approval event says: the vote, and the count it brings the run to."""
    return {
        "approval_id": approval.id,
        "decision": decision,
        "comment": comment,
        "approvals": given,
        "required": approval.required,
        "approved_by": approval.approved_by,
    }


def _refuse_unless_decidable(
    approval: Approval, *, actor: str, payload_hash: str, now: datetime
) -> None:
    """Raise ApprovalRefused unless ``actor`` may decide this approval now."""
    if approval.status != Approval.Status.PENDING:
        who = f" by {approval.decided_by}" if approval.decided_by_id else ""
        raise ApprovalRefused(f"This run was already {approval.status}{who}.")
    if now >= approval.expires_at:
        # Expired since refuse_if_expired looked: the sweeper ends it.
        raise ApprovalRefused(f"The approval expired at {approval.expires_at:%Y-%m-%d %H:%M}Z.")
    if approval.run.requested_by == actor:
        raise ApprovalRefused(
            "Separation of duties: whoever submitted a decision cannot approve or reject it.",
            conflict=False,
        )
    if payload_hash != approval.payload_hash:
        raise ApprovalRefused("The decision differs from the one this approval was for.")


def _dispatch_or_reject(
    approval: Approval, *, user_id: int, actor: str, surface: Surface, now: datetime
) -> None:
    """Move the held run on by the approval's verdict, and record the verdict."""
    run = approval.run
    approve = approval.status == Approval.Status.APPROVED
    verb = "approved" if approve else "rejected"
    given = approval.approvals_given
    if approval.required > 1 and approve:
        verb += f" the run: {given} of {approval.required} approvals, dispatched"
    else:
        verb += " the run"
    fields: dict[str, object] = {"awaiting_approval": False, "updated_at": now}
    if approve:
        fields |= {"status": RunStatus.PENDING, "next_wake_at": now}
    else:
        fields |= {"status": RunStatus.REJECTED, "finished_at": now, "current_step_id": ""}
    WorkflowRun.objects.filter(pk=run.pk).update(**fields)
    record_run_event(
        run,
        RuntimeEvent.Kind.APPROVAL_DECIDED,
        surface=surface,
        user_id=user_id,
        delta_summary=f"{actor} {verb}",
        payload=_vote_payload(
            approval, decision=approval.status, given=given, comment=approval.comment
        ),
    )
    if approve:
        notify_runners()
    else:
        record_run_event(
            run,
            RuntimeEvent.Kind.RUN_FINISHED,
            surface=surface,
            user_id=user_id,
            delta_summary=f"Run rejected by {actor}",
            payload=_terminal(run, RunStatus.REJECTED),
        )


def expire_due(now: datetime | None = None) -> int:
    """End every held run whose approval ran out of time; return how many."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            Approval.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("run")
            .filter(status=Approval.Status.PENDING, expires_at__lte=now)[:100]
        )
        _expire(due, now)
    return len(due)


def _expire(approvals: list[Approval], now: datetime) -> None:
    for approval in approvals:
        approval.status = Approval.Status.EXPIRED
        approval.save(update_fields=["status"])
        run = approval.run
        WorkflowRun.objects.filter(pk=run.pk, status=RunStatus.AWAITING_APPROVAL).update(
            status=RunStatus.EXPIRED, awaiting_approval=False, finished_at=now, updated_at=now
        )
        record_run_event(
            run,
            RuntimeEvent.Kind.RUN_FINISHED,
            surface=Surface.DECISION_RUNTIME,
            delta_summary="Nobody approved the run in time",
            payload=_terminal(run, RunStatus.EXPIRED),
        )


def _terminal(run: WorkflowRun, status: str) -> dict[str, object]:
    return {
        "workflow_run_id": run.run_id,
        "terminal_status": status,
        "failed_step_id": None,
        "compensated_mutations": [],
    }
