"""The runner benchmark: throughput, commits per step and wake latency, next to the
database's own limit for one bare step transaction measured in the same run."""

from __future__ import annotations

import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.db import connection
from django.db.models import Max, Min
from rich.progress import Progress

from controlplane.intake.submit import POLICY_DIR, submit_decision
from controlplane.models import Organization, ServiceAccount, Workspace
from controlplane.policy.versions import activate_policy
from mutations.connectors.sandbox import open_campaigns
from mutations.ids import new_id
from mutations.models import RuntimeEvent, SandboxFault
from runs.models import TERMINAL_STATUSES, StepExecution, WorkflowRun

ROOT = Path(__file__).resolve().parents[2]
BUDGET = 1_000_000_000_000


@dataclass
class BenchResult:
    decisions: int
    runners: int
    seconds: float
    sagas_per_second: float
    steps: int
    forward_steps: int
    steps_per_second: float
    commits: int
    commits_per_forward_step: float
    commits_per_step: float
    wake_p50_ms: float
    wake_p99_ms: float
    raw_tps: float

    @property
    def ratio(self) -> float:
        return self.steps_per_second / self.raw_tps if self.raw_tps else 0.0


class Bench:
    def __init__(
        self, *, decisions: int, runners: int, wake_samples: int, out: Callable[[str], None]
    ):
        self.decisions = decisions
        self.runners = runners
        self.wake_samples = wake_samples
        self.out = out
        slug = f"bench-{new_id('org')[-8:].lower()}"
        self.org = Organization.objects.create(name=f"Benchmark {slug}", slug=slug)
        self.workspace = Workspace.objects.create(org=self.org, name="Bench", slug="bench")
        self.agent = ServiceAccount.objects.create(
            org=self.org, workspace=self.workspace, name="bench-agent"
        )
        activate_policy(
            workspace=self.workspace,
            text=(POLICY_DIR / "budget_policy_v1.yaml").read_text(),
            activated_by="bench",
        )

    # ---- phases --------------------------------------------------------------------------

    def run(self) -> BenchResult:
        self._submit(self.decisions, progress_label="submitting decisions")
        before = commits()
        processes = [self._start_runner("--until-idle") for _ in range(self.runners)]
        self._await_drain(processes)
        drained_commits = commits() - before
        started = RuntimeEvent.objects.filter(org=self.org, kind="run_started").aggregate(
            at=Min("timestamp")
        )["at"]
        ended = WorkflowRun.objects.filter(org=self.org).aggregate(at=Max("finished_at"))["at"]
        seconds = (ended - started).total_seconds()
        executions = StepExecution.objects.filter(org=self.org)
        steps = sum(executions.values_list("attempts", flat=True))
        forward = sum(executions.filter(kind="forward").values_list("attempts", flat=True))
        latencies = self._wake_latency()
        raw = raw_step_tps(self.runners, seconds=5)
        return BenchResult(
            decisions=self.decisions,
            runners=self.runners,
            seconds=seconds,
            sagas_per_second=self.decisions / seconds,
            steps=steps,
            forward_steps=forward,
            steps_per_second=steps / seconds,
            commits=drained_commits,
            commits_per_forward_step=drained_commits / forward,
            commits_per_step=drained_commits / steps,
            wake_p50_ms=percentile(latencies, 50),
            wake_p99_ms=percentile(latencies, 99),
            raw_tps=raw,
        )

    def _submit(self, count: int, *, progress_label: str) -> list[str]:
        markets = [f"b{n:06d}" for n in range(count)]
        open_campaigns(org_id=self.org.id, markets=markets, daily_budget_micros=BUDGET)
        ids = []
        with Progress(transient=True) as progress:
            task = progress.add_task(progress_label, total=count)
            for n, market in enumerate(markets):
                ids.append(self._submit_one(n, market))
                progress.advance(task)
        return ids

    def _submit_one(self, n: int, market: str) -> str:
        decision_id = new_id("dec")
        if n % 10 < 3:  # 30% fail on the last step and compensate
            SandboxFault.objects.create(
                org=self.org,
                platform="google",
                kind=SandboxFault.Kind.FATAL,
                key_prefix=f"{decision_id}-attempt-1:credit_target_channel",
            )
        document = {
            "id": decision_id,
            "type": "rebalance_spend",
            "priority": "medium",
            "confidence": 0.8,
            "summary": f"Benchmark rebalance {n}",
            "reasoning": "benchmark",
            "auto_executable": True,
            "action": {
                "type": "rebalance_spend",
                "source_channel": "meta",
                "target_channel": "google",
                "amount": 10,
                "currency": "USD",
                "cadence": "daily",
                "scope": {"market": market},
                "reason": "benchmark",
            },
            "computed_at": "2026-04-22T18:12:04Z",
            "policy_version": "budget_policy_v1",
        }
        submit_decision(
            workspace=self.workspace,
            document=document,
            requested_by=self.agent.actor,
            surface="bench",
        )
        return decision_id

    def _await_drain(self, processes: list[subprocess.Popen[bytes]]) -> None:
        runs = WorkflowRun.objects.filter(org=self.org)
        with Progress(transient=True) as progress:
            task = progress.add_task(
                f"draining with {self.runners} runner(s)", total=self.decisions
            )
            while any(p.poll() is None for p in processes):
                progress.update(task, completed=runs.filter(status__in=TERMINAL_STATUSES).count())
                time.sleep(0.25)
        failed = [p for p in processes if p.returncode != 0]
        if failed:
            raise RuntimeError(f"a runner exited with {failed[0].returncode}")

    def _wake_latency(self) -> list[float]:
        """Submit decisions one at a time to idle runners; time received -> first step applied."""
        processes = [self._start_runner() for _ in range(self.runners)]
        time.sleep(3)  # let the runners start and go idle
        ids = []
        with Progress(transient=True) as progress:
            task = progress.add_task("measuring wake latency", total=self.wake_samples)
            for n in range(self.wake_samples):
                ids.append(self._submit_one(self.decisions + n, f"w{n:06d}"))
                time.sleep(0.03)
                progress.advance(task)
        deadline = time.monotonic() + 60
        runs = WorkflowRun.objects.filter(decision_id__in=ids)
        while runs.exclude(status__in=TERMINAL_STATUSES).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
        first_steps = StepExecution.objects.filter(
            run__decision_id__in=ids, kind="forward", position=0
        ).values_list("finished_at", "run__decision__received_at")
        return [(done - received).total_seconds() * 1000 for done, received in first_steps if done]

    def _start_runner(self, *args: str) -> subprocess.Popen[bytes]:
        # Runners as in production: no DEBUG query log, warnings only.
        env = {
            **os.environ,
            "DEBUG": "0",
            "RUNNER_LOG_LEVEL": "WARNING",
            "BACKSTOP_RUNNER_POLL_SECONDS": "1",
        }
        return subprocess.Popen(
            [sys.executable, "manage.py", "runworkflows", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )


# ---- the database's own limit -------------------------------------------------------------


def commits() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def _conninfo() -> dict[str, Any]:
    db = settings.DATABASES["default"]
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
    connection.close()  # the workers are forked: they must not share our connection
    forking = multiprocessing.get_context("fork")
    counts = forking.Manager().dict()
    workers = [
        forking.Process(target=_raw_worker, args=(conninfo, n, seconds, counts))
        for n in range(clients)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    with psycopg.connect(**conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE bench_raw_log, bench_raw_state")
    return sum(counts.values()) / seconds


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]
