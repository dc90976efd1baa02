"""The writes of one group commit, gathered in memory and sent as one statement per table.

``runs.records`` fills a ``Batch`` while it records a group of outcomes; ``flush`` then
inserts the Mutation Log rows (chained per org), the new step executions and the events,
and updates the step executions and runs, each table in one statement. Updates of rows
that change the same columns share one ``executemany`` (one round trip on PostgreSQL,
whose driver pipelines it), with values prepared by the model's own fields.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.db import connection, models

from mutations import chain
from mutations.models import Mutation, RuntimeEvent
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
        StepExecution.objects.bulk_create(self.new_executions)
        update_rows(
            StepExecution,
            [
                (e.pk, {n: getattr(e, _concrete(StepExecution, n).attname) for n in names})
                for e, names in self.execution_updates.items()
            ],
        )
        update_rows(WorkflowRun, [(run.pk, fields) for run, fields in self.run_updates.items()])
        if self.released_scopes:
            ScopeLock.objects.filter(run_id__in=self.released_scopes).delete()
        RuntimeEvent.objects.bulk_create(self.events)
        by_org: dict[str, list[Mutation]] = defaultdict(list)
        for mutation in self.mutations:
            by_org[mutation.org_id].append(mutation)
        for org_id in sorted(by_org):  # one order for every runner: no deadlock between heads
            chain.link(*by_org[org_id])
        Mutation.objects.bulk_create(self.mutations)


def update_rows(model: type[models.Model], rows: list[tuple[Any, dict[str, Any]]]) -> None:
    """Set each row's fields (by primary key); rows setting the same columns share one
    statement."""
    groups: dict[tuple[str, ...], list[list[Any]]] = defaultdict(list)
    for pk, values in rows:
        names = tuple(sorted(values))
        groups[names].append([_db_value(model, n, values[n]) for n in names] + [pk])
    quote = connection.ops.quote_name
    table, pk_column = quote(model._meta.db_table), quote(_column(model, model._meta.pk.name))
    with connection.cursor() as cursor:
        for names, params in groups.items():
            columns = ", ".join(f"{quote(_column(model, n))} = %s" for n in names)
            cursor.executemany(f"UPDATE {table} SET {columns} WHERE {pk_column} = %s", params)


def _concrete(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    found = model._meta.get_field(name)
    assert isinstance(found, models.Field), f"{model.__name__}.{name} is not a column"
    return found


def _column(model: type[models.Model], name: str) -> str:
    return str(_concrete(model, name).column)


def _db_value(model: type[models.Model], name: str, value: Any) -> Any:
    return _concrete(model, name).get_db_prep_save(value, connection)
