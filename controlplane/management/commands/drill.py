import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from rich.progress import Progress

from controlplane.drills.schedule import drill_everything
from controlplane.drills.start import DrillRefused, start_drill
from controlplane.drills.verify import verify_drill
from controlplane.models import Drill, Fault, Workspace
from runs.engines.workers import default_in_flight, temporal_worker
from runs.models import Engine
from runs.runner import RunnerConfigurationError, Worker


class Command(BaseCommand):
    help = (
        "Rehearse a failure on sandbox platforms and check the undo: one drill, or --all "
        "(each step of each workflow failing in turn, plus a failing compensation)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--all", action="store_true", help="Drill every workflow.")
        parser.add_argument("--workflow", help="Workflow id, e.g. execute_rebalance_spend.")
        parser.add_argument("--step", help="The step to fail, e.g. credit_target_channel.")
        parser.add_argument("--fault", choices=Fault.values, default=Fault.RATE_LIMIT)
        parser.add_argument("--org", default="demo", help="Organization slug (default: demo).")
        parser.add_argument(
            "--engine",
            choices=Engine.values,
            help="What executes the drill runs: builtin (Backstop's runners) or temporal (a "
            "Temporal cluster: TEMPORAL_ADDRESS). Default: BACKSTOP_ENGINE.",
        )
        parser.add_argument(
            "--drain",
            action="store_true",
            help="Execute the drill runs in this process (a runner of the engine) instead of "
            "waiting for the runners.",
        )
        parser.add_argument("--timeout", type=float, default=300, help="Seconds to wait.")

    def handle(self, *args: Any, **options: Any) -> None:
        workspace = Workspace.objects.filter(org__slug=options["org"]).order_by("id").first()
        if workspace is None:
            raise CommandError(f"No organization {options['org']!r}; run `manage.py demo` first.")
        engine = options["engine"] or settings.BACKSTOP_ENGINE
        try:
            if options["all"]:
                drills = drill_everything(workspace=workspace, started_by="cli", engine=engine)
            elif options["workflow"] and options["step"]:
                drills = [
                    start_drill(
                        workspace=workspace,
                        workflow_id=options["workflow"],
                        step_id=options["step"],
                        fault=options["fault"],
                        started_by="cli",
                        engine=engine,
                    )
                ]
            else:
                raise CommandError("Give --workflow and --step, or --all.")
        except DrillRefused as refused:
            raise CommandError(str(refused)) from None
        if options["drain"]:
            _drain(engine)
        self._wait(drills, engine=engine, timeout=options["timeout"])
        failed = self._report([verify_drill(Drill.objects.get(pk=d.pk)) for d in drills])
        if failed:
            raise CommandError(f"{failed} of {len(drills)} drill(s) failed.")

    def _wait(self, drills: list[Drill], *, engine: str, timeout: float) -> None:
        runs = Drill.objects.filter(pk__in=[d.pk for d in drills])
        deadline = time.monotonic() + timeout
        with Progress(transient=True) as progress:
            task = progress.add_task("drills running", total=len(drills))
            while True:
                done = runs.filter(run__finished_at__isnull=False).count()
                progress.update(task, completed=done)
                if done == len(drills):
                    return
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"{len(drills) - done} drill run(s) unfinished after {timeout:g}s: "
                        f"is a runner running (runworkflows --engine {engine})? "
                        "(or pass --drain)"
                    )
                time.sleep(0.2)

    def _report(self, drills: list[Drill]) -> int:
        failed = 0
        for drill in drills:
            mark = self.style.SUCCESS("PASS") if drill.passed else self.style.ERROR("FAIL")
            failed += not drill.passed
            self.stdout.write(
                f"{mark} {drill.workflow_id}: {drill.step_id} fails ({drill.fault}), "
                f"expected {drill.expected_status}: {drill.id} run {drill.run_id}"
            )
            for check in drill.checks:
                sign = "✓" if check["passed"] else "✗"
                self.stdout.write(f"    {sign} {check['name']}: {check['evidence']}")
        return failed


def _drain(engine: str) -> None:
    """Run a runner of ``engine`` in this process until no run of it is left to execute."""
    try:
        if engine == Engine.BUILTIN:
            Worker().run(until_idle=True)
            return
        temporal_worker(in_flight=default_in_flight()).run(until_idle=True)
    except RunnerConfigurationError as error:
        raise CommandError(str(error)) from None
