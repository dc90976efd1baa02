"""The writes of one group commit, gathered in memory and sent as one statement per table.

``runs.records`` fills a ``Batch`` while it records a group of outcomes; ``flush`` then
inserts the Mutation Log rows (chained per org), the new step executions and the events,
and updates the step executions and runs, each table in one statement. Updates of rows
that change the same columns share one ``executemany`` (one round trip on PostgreSQL,
whose driver pipelines it); inserts read their values straight off the unsaved
instances (``mutations.rows``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from mutations import chain
from mutations.models import Mutation, RuntimeEvent
from mutations.rows import attname, insert_rows, update_rows
from runs.models import ScopeLock, StepExecution, WorkflowRun


@dataclass
class Batch:
    mutations: list[Mutation] = field(default_factory=list)
    new_executions: list[StepExecution] = field(default_factory=list)
    execution_updates: dict[StepExecution, set[str]] = field(default_factory=dict)
    run_updates: dict[WorkflowRun, dict[str, Any]] = field(default_factory=dict)
    events: list[RuntimeEvent] = field(default_factory=list)
    released_scopes: list[str] = field(default_factory=list)  # run ids

    def update_run(self, run: WorkflowRun, fields: dict[str, Any]) -> None:
        self.run_updates.setdefault(run, {}).update(fields)

    def update_execution(self, execution: StepExecution, fields: list[str]) -> None:
        if execution.pk is None:
            return  # inserted by this batch with its current values
        self.execution_updates.setdefault(execution, set()).update(fields)

    def flush(self) -> None:
        """Write everything gathered, mutations last but one: each org's chain head stays
        locked only for the end of the transaction."""
        insert_rows(StepExecution, self.new_executions)
        update_rows(
            StepExecution,
            [
                (e.pk, {n: getattr(e, attname(StepExecution, n)) for n in names})
                for e, names in self.execution_updates.items()
            ],
        )
        update_rows(WorkflowRun, [(run.pk, fields) for run, fields in self.run_updates.items()])
        if self.released_scopes:
            ScopeLock.objects.filter(run_id__in=self.released_scopes).delete()
        insert_rows(RuntimeEvent, self.events)
        by_org: dict[str, list[Mutation]] = defaultdict(list)
        for mutation in self.mutations:
            by_org[mutation.org_id].append(mutation)
        for org_id in sorted(by_org):  # one order for every runner: no deadlock between heads
            chain.link(*by_org[org_id])
        insert_rows(Mutation, self.mutations)
