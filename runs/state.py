"""What a runner knows of a claimed run while it drives it.

A run's state is kept in memory between steps: nobody else may write it while this runner
holds the lease, and every write of it goes through ``runs.records``, which keeps this copy
in step with the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from mutations.hashing import reads_in_database
from runs import saga
from runs.models import RunStatus, StepExecution, WorkflowRun
from runs.saga import Action, Finish, Wait
from runs.workflows import Workflow


@dataclass
class RunState:
    """A claimed run with its step records, as this runner knows them."""

    run: WorkflowRun
    workflow: Workflow
    records: dict[tuple[str, str], StepExecution] = field(default_factory=dict)
    finishing: Finish | None = None  # ended, waiting for its scope's state to be read

    @cached_property
    def reads_state_in_database(self) -> bool:
        """True when every platform of the run's scope lives in the database, so its state
        is read inside Backstop's own transactions rather than by a call."""
        return reads_in_database(self.run.scope)

    def next_move(self, now: datetime) -> Action | Wait | Finish:
        return saga.next_move(
            self.workflow,
            self.run.input,
            compensating=self.run.status == RunStatus.COMPENSATING,
            failed_step_id=self.run.failed_step_id,
            records=self.records,
            now=now,
        )


@dataclass(frozen=True)
class Attempt:
    """One try of an action: its call's idempotency key, its number (from 1), its start."""

    key: str
    number: int
    started_at: datetime
