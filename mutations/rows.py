"""Writing rows without the query compiler, for the paths every decision and step take.

``insert_rows`` inserts unsaved model instances, reading their values straight off them
(what ``Model.save`` and ``bulk_create`` do, without building a query each time);
``update_rows`` sets columns of rows by primary key, one statement for the
rows that set the same columns (an ``executemany``, one round trip on PostgreSQL, whose
driver pipelines it). Values are prepared by the model's own fields, except the plain
types the driver takes as they are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from django.db import connection, models

# Fields whose values the driver takes as they are (a foreign key: its target's id).
PLAIN_FIELDS = (
    models.CharField,
    models.TextField,
    models.IntegerField,
    models.BooleanField,
    models.ForeignKey,
)


@dataclass(frozen=True)
class Column:
    name: str
    field: models.Field[Any, Any]
    prepare: Callable[[Any], Any]  # the instance's value -> the database's
    stamped: bool  # auto_now or auto_now_add: the field sets the value on insert

    def value(self, row: models.Model) -> Any:
        if self.stamped:
            return self.prepare(self.field.pre_save(row, add=True))
        return self.prepare(getattr(row, self.field.attname))


def insert_rows(model: type[models.Model], rows: Sequence[models.Model]) -> None:
    """Insert unsaved instances of ``model`` and mark them saved: one ``executemany`` of a
    one-row statement (the same text every time, so PostgreSQL prepares it once), or, when
    the database numbers the rows, one multi-row statement that returns their keys."""
    if not rows:
        return
    columns = _insert_columns(model, connection.vendor)
    quote = connection.ops.quote_name
    placeholders = f"({', '.join(['%s'] * len(columns))})"
    sql = f"INSERT INTO {table(model)} ({', '.join(quote(c.name) for c in columns)}) VALUES "
    values = [[column.value(row) for column in columns] for row in rows]
    with connection.cursor() as cursor:
        if isinstance(model._meta.pk, models.AutoField):
            cursor.execute(
                f"{sql}{', '.join([placeholders] * len(rows))} "
                f"RETURNING {quote(_column(model, model._meta.pk.name))}",
                [value for row in values for value in row],
            )
            # In the order of the VALUES, as bulk_create relies on too.
            for row, (pk,) in zip(rows, cursor.fetchall(), strict=True):
                row.pk = pk
        else:
            cursor.executemany(sql + placeholders, values)
    for row in rows:
        row._state.adding, row._state.db = False, connection.alias


def db_value(model: type[models.Model], name: str, value: Any) -> Any:
    """Return ``value`` as field ``name`` of ``model`` sends it to the database."""
    return _concrete(model, name).get_db_prep_save(value, connection)


def update_rows(model: type[models.Model], rows: list[tuple[Any, dict[str, Any]]]) -> None:
    """Set each row's fields (by primary key); rows setting the same columns share one
    statement."""
    groups: dict[tuple[str, ...], list[list[Any]]] = defaultdict(list)
    for pk, values in rows:
        names = tuple(sorted(values))
        groups[names].append([db_value(model, n, values[n]) for n in names] + [pk])
    quote = connection.ops.quote_name
    pk_column = quote(_column(model, model._meta.pk.name))
    with connection.cursor() as cursor:
        for names, params in groups.items():
            columns = ", ".join(f"{quote(_column(model, n))} = %s" for n in names)
            cursor.executemany(
                f"UPDATE {table(model)} SET {columns} WHERE {pk_column} = %s", params
            )


@cache
def _insert_columns(model: type[models.Model], vendor: str) -> list[Column]:
    """Return the columns an insert into ``model`` writes (all but a numbered key)."""
    columns = []
    for column_field in model._meta.concrete_fields:
        if isinstance(column_field, models.AutoField):
            continue
        plain = isinstance(column_field, PLAIN_FIELDS) or (
            vendor == "postgresql" and isinstance(column_field, models.DateTimeField)
        )
        stamped = bool(
            getattr(column_field, "auto_now", False) or getattr(column_field, "auto_now_add", False)
        )
        prepare = _as_is if plain else _prepared_by(column_field)
        columns.append(Column(str(column_field.column), column_field, prepare, stamped))
    return columns


def _as_is(value: Any) -> Any:
    return value


def _prepared_by(column_field: models.Field[Any, Any]) -> Callable[[Any], Any]:
    return lambda value: column_field.get_db_prep_save(value, connection)


def table(model: type[models.Model]) -> str:
    """Return ``model``'s table name, quoted for SQL."""
    return str(connection.ops.quote_name(model._meta.db_table))


def one_of(column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """Return a condition that ``column`` holds one of ``values``, and its parameters: on
    PostgreSQL one array parameter, so that the statement's text is the same for any
    number of values (prepared once); elsewhere an ``IN`` list."""
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%s)", [list(values)]
    return f"{column} IN ({', '.join(['%s'] * len(values))})", list(values)


def for_update() -> str:
    """Return the clause that locks the rows a SELECT reads, where the database has one
    (SQLite locks the whole database for a write transaction instead)."""
    return " FOR UPDATE" if connection.features.has_select_for_update else ""


def attname(model: type[models.Model], name: str) -> str:
    """Return the attribute that holds field ``name``'s value (a foreign key: its id)."""
    return _concrete(model, name).attname


def _concrete(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    found = model._meta.get_field(name)
    assert isinstance(found, models.Field), f"{model.__name__}.{name} is not a column"
    return found


def _column(model: type[models.Model], name: str) -> str:
    return str(_concrete(model, name).column)
