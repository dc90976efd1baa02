"""The runner's opt-in counters (runs/instrumentation.py): what one process sent to the
database, counted statement by statement, on PostgreSQL."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from django.db import connection, connections, transaction

from controlplane.models import Organization
from runs import instrumentation


@pytest.fixture(autouse=True)
def _postgresql_only(transactional_db: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the counts read psycopg's transaction status")


class Refused(Exception):
    pass


def query_in_a_thread_of_its_own() -> None:
    def query() -> None:
        try:
            Organization.objects.count()
        finally:
            connections.close_all()

    thread = threading.Thread(target=query)
    thread.start()
    thread.join()


def test_counts_each_statement_begin_commit_and_rollback_on_every_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(instrumentation.ENVIRONMENT_VARIABLE, str(tmp_path))
    connection.ensure_connection()
    instrumentation.start()
    try:
        Organization.objects.count()  # autocommit: its own transaction
        with transaction.atomic():  # BEGIN, two statements, COMMIT
            Organization.objects.count()
            Organization.objects.create(name="Acme", slug="acme")
        with transaction.atomic():
            pass  # nothing is sent for a transaction without statements
        with pytest.raises(Refused), transaction.atomic():  # BEGIN, one statement, ROLLBACK
            Organization.objects.count()
            raise Refused
        query_in_a_thread_of_its_own()  # a new connection: autocommit
    finally:
        path = instrumentation.finish()

    assert path is not None
    report = json.loads(path.read_text())
    assert path == tmp_path / f"runner-{report['pid']}.json"
    assert (report["statements"], report["commits"], report["rollbacks"]) == (5, 3, 1)
    assert report["round_trips"] == 1 + (1 + 2 + 1) + (1 + 1 + 1) + 1
    assert report["cpu_seconds"] > 0
    assert report["peak_rss_kb"] > 10_000


def test_nothing_is_wrapped_or_written_unless_enabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(instrumentation.ENVIRONMENT_VARIABLE, raising=False)
    connection.ensure_connection()
    instrumentation.start()
    Organization.objects.count()

    assert connection.execute_wrappers == []
    assert "_commit" not in vars(connection)
    assert instrumentation.finish() is None


def test_finish_unwraps_the_connections_it_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(instrumentation.ENVIRONMENT_VARIABLE, str(tmp_path))
    connection.ensure_connection()
    instrumentation.start()
    assert len(connection.execute_wrappers) == 1
    instrumentation.finish()

    assert connection.execute_wrappers == []
    assert "_commit" not in vars(connection)
    assert "_rollback" not in vars(connection)
