"""The Mutation Log and the events refuse change in the ORM and, on PostgreSQL, in the database."""

import pytest
from django.db import DatabaseError, connection, transaction

from controlplane.models import ServiceAccount
from mutations.models import AppendOnlyError, Mutation, RuntimeEvent
from tests.conftest import drain, rebalance, submit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def evidence(agent: ServiceAccount) -> None:
    submit(agent, rebalance())
    drain()


def test_orm_refuses_bulk_update_and_delete(evidence: None) -> None:
    for model in (Mutation, RuntimeEvent):
        with pytest.raises(AppendOnlyError):
            model.objects.update(org_id="org_elsewhere")
        with pytest.raises(AppendOnlyError):
            model.objects.all().delete()
    assert Mutation.objects.filter(status="success").count() == 2


@pytest.mark.parametrize("table", ["mutations_mutation", "mutations_runtimeevent"])
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {table} SET created_at = created_at",
        "DELETE FROM {table}",
        "TRUNCATE {table} CASCADE",
    ],
)
def test_database_refuses_update_delete_and_truncate(
    evidence: None, table: str, statement: str
) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the database triggers are PostgreSQL's")
    if table == "mutations_runtimeevent" and statement.startswith("UPDATE"):
        statement = "UPDATE {table} SET timestamp = timestamp"
    before = Mutation.objects.count(), RuntimeEvent.objects.count()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("SET LOCAL backstop.allow_truncate = 'off'")
        cursor.execute(statement.format(table=table))
    assert (Mutation.objects.count(), RuntimeEvent.objects.count()) == before
