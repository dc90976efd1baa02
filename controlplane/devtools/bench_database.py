"""The benchmark's view of the database: its commit counter, the URL runner processes
connect with, the upkeep before each measurement, and the database's own limit for one
bare step transaction."""

from __future__ import annotations

import multiprocessing
import time
from typing import Any
from urllib.parse import quote

import psycopg
from django.apps import apps
from django.db import connection

from mutations.rows import table

RUNNER_APPLICATION_NAME = "backstop-bench-runner"  # the runners' sessions (PGAPPNAME)
COMMITS_PER_READ = 2  # commits() commits twice: its flush, then its read


def commits() -> int:
    """Return the commits of this database so far (``pg_stat_database.xact_commit``).

    A backend flushes its counts at most once a second (PostgreSQL 15), so this one's are
    flushed first; other sessions' are complete once they have ended. Subtract
    COMMITS_PER_READ from the difference of two reads.
    """
    flushes = getattr(connection, "pg_version", 0) >= 150000
    with connection.cursor() as cursor:
        # Committed either way, so that a read always commits the same number of times.
        cursor.execute("SELECT pg_stat_force_next_flush()" if flushes else "SELECT 1")
        cursor.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def await_sessions_ended(application_name: str, *, timeout: float = 10.0) -> None:
    """Wait until no session of that name is left (their counts are flushed as they end)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # else cached per transaction
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                [application_name],
            )
            row = cursor.fetchone()
        if not row or row[0] == 0:
            return
        time.sleep(0.05)


def vacuum() -> None:
    """``VACUUM ANALYZE`` Backstop's tables, as pgbench does before it measures.

    Every step updates its run's row several times; until a vacuum, the dead versions
    stay in the index the runners claim by, and each claim reads past them. Without this,
    a measurement would pay for the garbage of earlier rows and phases, more or less
    depending on when autovacuum last ran (if it runs at all).
    """
    tables = sorted(
        table(model)
        for app in ("controlplane", "runs", "mutations")
        for model in apps.get_app_config(app).get_models()
        if not model._meta.proxy
    )
    with psycopg.connect(**_conninfo(), autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {', '.join(tables)}")


def database_url() -> str:
    """Return a DATABASE_URL naming the database this process uses, so the runners it
    starts work on the same one (a test's database too)."""
    db = connection.settings_dict
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "localhost"
    port = db.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{quote(db['NAME'], safe='')}"


def _conninfo() -> dict[str, Any]:
    db = connection.settings_dict
    params = {
        "dbname": db["NAME"],
        "user": db.get("USER"),
        "password": db.get("PASSWORD"),
        "host": db.get("HOST"),
        "port": db.get("PORT"),
    }
    return {k: v for k, v in params.items() if v}


def _raw_worker(conninfo: dict[str, Any], worker: int, seconds: float, counts: Any) -> None:
    done = 0
    with psycopg.connect(**conninfo) as conn:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with conn.transaction():
                conn.execute(
                    "UPDATE bench_raw_state SET budget = budget + 1 WHERE id = %s", [worker]
                )
                conn.execute(
                    "INSERT INTO bench_raw_log (state_id, payload, created_at) "
                    "VALUES (%s, %s, now())",
                    [worker, '{"daily_budget_delta_micros": 1}'],
                )
            done += 1
    counts[worker] = done


def raw_step_tps(clients: int, *, seconds: float) -> float:
    """Return commits/s of a bare step transaction (update one row + insert one) with
    ``clients`` processes on the same database."""
    conninfo = _conninfo()
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_raw_log, bench_raw_state")
        conn.execute("CREATE TABLE bench_raw_state (id int PRIMARY KEY, budget bigint NOT NULL)")
        conn.execute(
            "CREATE TABLE bench_raw_log (id bigserial PRIMARY KEY, state_id int NOT NULL, "
            "payload jsonb NOT NULL, created_at timestamptz NOT NULL)"
        )
        conn.execute(
            "INSERT INTO bench_raw_state SELECT g, 0 FROM generate_series(0, %s) g", [clients]
        )
    # The workers come from a fork server (a process of its own, with one thread): a fork of
    # this process would copy the threads' locks of whatever runs here (a Temporal client's).
    forking = multiprocessing.get_context("forkserver")
    with forking.Manager() as manager:
        counts = manager.dict()
        workers = [
            forking.Process(target=_raw_worker, args=(conninfo, n, seconds, counts))
            for n in range(clients)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        done = sum(counts.values())
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE bench_raw_log, bench_raw_state")
    return done / seconds
