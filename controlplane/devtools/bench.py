"""The runner benchmark: for each engine and runner count, the same mix of decisions
drained by that many runner processes (Backstop's runners, or Temporal workers).
Throughput, commits per step and wake latency, the runners' own counts per forward step,
next to the database's limit for one bare step transaction."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.db import transaction
from django.db.models import Count, Max, Min
from rich.console import Console
from rich.progress import Progress

from controlplane.devtools.bench_database import (
    COMMITS_PER_READ,
    RUNNER_APPLICATION_NAME,
    await_sessions_ended,
    commits,
    database_url,
    raw_step_tps,
    vacuum,
)
from controlplane.devtools.bench_engines import Reaped, TemporalServer
from controlplane.devtools.bench_mix import HttpMix, Mix, SandboxMix, fails
from controlplane.devtools.bench_results import BenchResult, RunnerReport
from controlplane.intake.submit import submit_decision
from controlplane.models import Organization, ServiceAccount, Workspace
from controlplane.policy.versions import activate_policy
from mutations.ids import new_id
from mutations.models import RuntimeEvent
from mutations.services import Surface
from runs.instrumentation import ENVIRONMENT_VARIABLE
from runs.models import TERMINAL_STATUSES, Engine, StepExecution, WorkflowRun

ROOT = Path(__file__).resolve().parents[2]
RUNNER_START_SECONDS = 3.0  # for idle runners to start and LISTEN before wake samples
WAKE_DEADLINE_SECONDS = 60.0
WAKE_POLL_SECONDS = 0.02
STALL_SECONDS = 300.0  # no run ended for this long: the runners are stuck, not slow


def run_bench(
    *,
    decisions: int,
    runner_counts: list[int],
    wake_samples: int,
    raw_seconds: float,
    platform_latency_ms: float | None,
    in_flight: int | None = None,
    engines: list[str] | None = None,
    on_temporal: Callable[[str], None] | None = None,
) -> tuple[str, list[BenchResult]]:
    """Measure one row per engine and runner count on the sandbox platforms, or on
    reference HTTP platforms when a latency is given; return the platforms' description
    and the rows. ``on_temporal`` hears which Temporal server the Temporal rows use."""
    engines = engines or [Engine.BUILTIN]
    mix: Mix = (
        SandboxMix() if platform_latency_ms is None else HttpMix(latency_ms=platform_latency_ms)
    )
    temporal = None
    try:
        if Engine.TEMPORAL in engines:
            temporal = TemporalServer()
            if on_temporal is not None:
                on_temporal(temporal.label)
        bench = Bench(
            decisions=decisions,
            wake_samples=wake_samples,
            raw_seconds=raw_seconds,
            mix=mix,
            in_flight=in_flight,
            temporal=temporal,
        )
        rows = [bench.measure(runners, engine) for engine in engines for runners in runner_counts]
        label = mix.label if in_flight is None else f"{mix.label}, runners --in-flight {in_flight}"
        return label, rows
    finally:
        if temporal is not None:
            temporal.close()
        mix.close()


@dataclass(frozen=True)
class Tenant:
    """A row's own organization, so each row counts its own runs."""

    org: Organization
    workspace: Workspace
    agent: ServiceAccount
    tag: str  # in the row's market names: HTTP platforms are shared by every row
    engine: str  # what runs the row's decisions


class Bench:
    """Measure rows of one mix: each row submits it afresh and drains it."""

    def __init__(
        self,
        *,
        decisions: int,
        wake_samples: int,
        raw_seconds: float,
        mix: Mix,
        in_flight: int | None = None,
        temporal: TemporalServer | None = None,
    ):
        self.in_flight = in_flight  # the runners' --in-flight; None: their default
        self.temporal = temporal  # the Temporal rows' server
        self.decisions = decisions
        self.wake_samples = wake_samples
        self.raw_seconds = raw_seconds
        self.mix = mix

    def measure(self, runners: int, engine: str = Engine.BUILTIN) -> BenchResult:
        """Submit the mix, drain it with ``runners`` processes of ``engine``, and measure
        the row."""
        self.mix.start_row()
        tenant = self._tenant(engine)
        self._submit(tenant, self.decisions)
        vacuum()
        server_cpu = self._server_cpu()
        drained_commits, reports = self._drain(tenant, runners)
        result = self._tally(tenant, runners, drained_commits, reports)
        if server_cpu is not None and engine == Engine.TEMPORAL:
            result.server_cpu_seconds = (self._server_cpu() or 0.0) - server_cpu
        result.platform_calls = self.mix.platform_calls()
        if self.wake_samples:
            vacuum()
            result.wake_ms = self._wake_latency(tenant, runners)
        if self.raw_seconds:
            result.raw_tps = raw_step_tps(runners, seconds=self.raw_seconds)
        return result

    # ---- phases --------------------------------------------------------------------------

    def _server_cpu(self) -> float | None:
        return None if self.temporal is None else self.temporal.cpu_seconds()

    def _tenant(self, engine: str) -> Tenant:
        tag = new_id("org")[-8:].lower()
        org = Organization.objects.create(name=f"Benchmark {tag}", slug=f"bench-{tag}")
        workspace = Workspace.objects.create(org=org, name="Bench", slug="bench")
        agent = ServiceAccount.objects.create(org=org, workspace=workspace, name="bench-agent")
        activate_policy(workspace=workspace, text=self.mix.policy_text, activated_by="bench")
        return Tenant(org=org, workspace=workspace, agent=agent, tag=tag, engine=engine)

    def _submit(self, tenant: Tenant, count: int) -> None:
        markets = self._markets(tenant, "b", count)
        with progress_bar() as progress:
            task = progress.add_task("submitting decisions", total=count)
            for n, market in enumerate(markets):
                self._submit_one(tenant, n, market)
                progress.advance(task)

    def _markets(self, tenant: Tenant, prefix: str, count: int) -> list[str]:
        """Return a market per decision, its objects created on the platforms."""
        markets = [f"{tenant.tag}{prefix}{n:06d}" for n in range(count)]
        self.mix.prepare(tenant.org, markets)
        return markets

    def _submit_one(self, tenant: Tenant, n: int, market: str) -> str:
        decision_id = new_id("dec")
        if fails(n):
            self.mix.plan_failure(tenant.org, decision_id)
        submit_decision(
            workspace=tenant.workspace,
            document=self.mix.document(decision_id, n, market),
            requested_by=tenant.agent.actor,
            surface=Surface.BENCH,
            engine=tenant.engine,
        )
        return decision_id

    def _drain(self, tenant: Tenant, runners: int) -> tuple[int, list[RunnerReport]]:
        """Drain the submitted runs; return the database's commits meanwhile and what each
        runner process counted."""
        with tempfile.TemporaryDirectory(prefix="backstop-bench-runners-") as directory:
            before = commits()
            processes = [
                Reaped(
                    self._start_runner(tenant, "--until-idle", **{ENVIRONMENT_VARIABLE: directory})
                )
                for _ in range(runners)
            ]
            # The bench's own reads meanwhile are rolled back: only the runners' commit.
            with transaction.atomic():
                self._await_drain(tenant, processes)
                await_sessions_ended(RUNNER_APPLICATION_NAME)
                transaction.set_rollback(True)
            drained = commits() - before - COMMITS_PER_READ
            return drained, [self._report(tenant, Path(directory), p) for p in processes]

    def _report(self, tenant: Tenant, directory: Path, runner: Reaped) -> RunnerReport:
        """Return what the runner counted; a Temporal worker that counts nothing gives its
        CPU time and peak memory, as the system measured them."""
        path = directory / f"runner-{runner.process.pid}.json"
        if path.exists():
            return RunnerReport.read(path)
        if tenant.engine == Engine.BUILTIN:
            raise RuntimeError(f"runner {runner.process.pid} did not report its counts")
        return RunnerReport.of(runner)

    def _await_drain(self, tenant: Tenant, processes: list[Reaped]) -> None:
        """Wait for the runners to exit; stop them if no run ends for STALL_SECONDS."""
        runs = WorkflowRun.objects.filter(org=tenant.org)
        ended, moved = -1, time.monotonic()
        with progress_bar() as progress:
            task = progress.add_task(
                f"draining with {len(processes)} {tenant.engine} runner(s)", total=self.decisions
            )
            while any([p.running() for p in processes]):
                now_ended = runs.filter(status__in=TERMINAL_STATUSES).count()
                if now_ended != ended:
                    ended, moved = now_ended, time.monotonic()
                elif time.monotonic() - moved > STALL_SECONDS:
                    stop([p.process for p in processes])
                    raise RuntimeError(
                        f"no run ended for {STALL_SECONDS:g} s ({ended} of {self.decisions} "
                        "ended); the runners' log above says why"
                    )
                progress.update(task, completed=ended)
                time.sleep(0.25)
        failed = [p.process for p in processes if p.process.returncode != 0]
        if failed:
            raise RuntimeError(f"a runner exited with {failed[0].returncode}")

    def _tally(
        self, tenant: Tenant, runners: int, drained_commits: int, reports: list[RunnerReport]
    ) -> BenchResult:
        org = tenant.org
        started = RuntimeEvent.objects.filter(org=org, kind="run_started").aggregate(
            at=Min("timestamp")
        )["at"]
        ended = WorkflowRun.objects.filter(org=org).aggregate(at=Max("finished_at"))["at"]
        statuses = Counter(
            dict(
                WorkflowRun.objects.filter(org=org)
                .order_by()
                .values_list("status")
                .annotate(Count("pk"))
            )
        )
        executions = StepExecution.objects.filter(org=org)
        return BenchResult(
            runners=runners,
            decisions=sum(statuses.values()),
            statuses=statuses,
            seconds=(ended - started).total_seconds() if started and ended else math.nan,
            steps=sum(executions.values_list("attempts", flat=True)),
            forward_steps=sum(executions.filter(kind="forward").values_list("attempts", flat=True)),
            commits=drained_commits,
            wake_ms=[],
            raw_tps=None,
            reports=reports,
            engine=tenant.engine,
        )

    def _wake_latency(self, tenant: Tenant, runners: int) -> list[float]:
        """Submit decisions one at a time to idle runners, each once the previous one has
        ended; return the times from received to first step applied."""
        markets = self._markets(tenant, "w", self.wake_samples)
        processes = [self._start_runner(tenant) for _ in range(runners)]
        time.sleep(RUNNER_START_SECONDS)
        ids = []
        try:
            with progress_bar() as progress:
                task = progress.add_task("measuring wake latency", total=len(markets))
                for n, market in enumerate(markets):
                    ids.append(self._submit_one(tenant, n, market))
                    self._await_end(ids[-1])
                    progress.advance(task)
        finally:
            stop(processes)
        first_steps = StepExecution.objects.filter(
            run__decision_id__in=ids, kind="forward", position=0
        ).values_list("finished_at", "run__decision__received_at")
        return [(done - received).total_seconds() * 1000 for done, received in first_steps if done]

    def _await_end(self, decision_id: str) -> None:
        deadline = time.monotonic() + WAKE_DEADLINE_SECONDS
        run = WorkflowRun.objects.filter(decision_id=decision_id)
        while not run.filter(status__in=TERMINAL_STATUSES).exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the run of {decision_id} did not end within a minute")
            time.sleep(WAKE_POLL_SECONDS)

    def _start_runner(self, tenant: Tenant, *args: str, **env: str) -> subprocess.Popen[bytes]:
        # Runners as in production: no DEBUG query log, warnings only.
        if tenant.engine == Engine.TEMPORAL:
            assert self.temporal is not None
            env = {**self.temporal.worker_env(f"bench-{tenant.tag}"), **env}
        args = ("--engine", tenant.engine, *args)
        environment = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "DEBUG": "0",
            "RUNNER_LOG_LEVEL": "WARNING",
            "BACKSTOP_RUNNER_POLL_SECONDS": "1",
            "PGAPPNAME": RUNNER_APPLICATION_NAME,
            **self.mix.runner_env,
            **env,
        }
        if self.in_flight is not None:
            args = (*args, "--in-flight", str(self.in_flight))
        return subprocess.Popen(
            [sys.executable, "manage.py", "runworkflows", *args],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.DEVNULL,
        )


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop runners as an operator would (SIGTERM: after the step in progress)."""
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        process.wait(timeout=30)


def progress_bar() -> Progress:
    """Return a progress bar on stderr: stdout carries the tables alone."""
    return Progress(transient=True, console=Console(stderr=True))
