"""A run as the timeline draws it: its lanes and attempts, the span of its life, and its
wait for an approver; and the words each attempt is told in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from controlplane.pages.attempts import COMPENSATION, SKIPPED, AttemptView, Lane
from controlplane.templatetags.backstop import duration

MAX_BARS = 150  # above this, or MAX_LANES, the run is drawn as counts
MAX_LANES = 24

OUTCOME_WORDS = {
    "succeeded": "succeeded",
    "retried": "failed, tried again",
    "failed": "failed",
    "skipped": "skipped",
}


@dataclass(frozen=True)
class ApprovalSpan:
    """A held run's wait for a person."""

    requested_at: datetime
    decided_at: datetime | None
    status: str  # pending | approved | rejected | expired
    decided_by: str = ""

    @property
    def words(self) -> str:
        if self.status == "pending":
            return "waiting for an approver"
        if self.status == "expired":
            return "expired without an approver"
        who = f" by {self.decided_by}" if self.decided_by else ""
        return f"{self.status}{who}"


@dataclass(frozen=True)
class Track:
    """One run to draw."""

    run_id: str
    lanes: list[Lane]
    attempts: list[AttemptView]
    start: datetime  # the run's creation
    end: datetime  # its finish, or now while it runs
    approval: ApprovalSpan | None = None
    started_at: datetime | None = None  # when it started running (after its approval)

    @property
    def dom_id(self) -> str:
        return f"tl-{self.run_id}"

    @property
    def wait(self) -> tuple[datetime, datetime] | None:
        """Return the run's wait to start: from its creation to its start (an approver's
        decision, then a runner's claim), or while an approver is still awaited."""
        if self.started_at is not None:
            return (self.start, self.started_at)
        if self.approval is not None:
            return (self.approval.requested_at, self.approval.decided_at or self.end)
        return None

    @property
    def wait_words(self) -> str:
        if self.approval is None:
            return "waited for a runner"
        return "waited for an approver" + (", then a runner" if self.started_at else "")

    @property
    def restart_label(self) -> str:
        """Return the label of the axis where the run starts after its shortened wait."""
        return "started" if self.started_at is not None else "+0"

    @property
    def too_many(self) -> bool:
        return len(self.attempts) > MAX_BARS or len(self.lanes) > MAX_LANES


def attempt_label(attempt: AttemptView, start: datetime) -> str:
    """Return what a bar says: step, attempt, outcome, duration, when, and its error."""
    kind = "compensation " if attempt.kind == COMPENSATION else ""
    at = duration(attempt.started_at - start) or "0 ms"
    if attempt.outcome == SKIPPED:
        return f"{kind}{attempt.name}: skipped at +{at}: {attempt.error}"
    text = (
        f"{kind}{attempt.name} attempt {attempt.number}: {OUTCOME_WORDS[attempt.outcome]} "
        f"after {duration(attempt.duration)}, started +{at}"
    )
    return f"{text}: {attempt.error}" if attempt.error else text
