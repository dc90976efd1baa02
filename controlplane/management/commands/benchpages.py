import statistics
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection
from django.test import Client
from django.utils import timezone
from rich.progress import Progress

from controlplane.devtools import sample_data
from controlplane.drills.start import DrillRefused, start_drill
from controlplane.models import (
    Decision,
    Membership,
    Organization,
    Role,
    ServiceAccount,
    Workspace,
)
from controlplane.pages.forms import Cursor
from mutations.ids import new_id
from runs.keys import step_key
from runs.models import RunStatus, StepExecution, WorkflowRun
from runs.workflows.registry import all_workflows

BATCH = 5000
# What the overview lists besides its counts: held runs, runs needing a person, drills,
# and the forward steps its latency percentiles read.
HELD = 50
STUCK = 20
STEPPED_RUNS = 5000


class Command(BaseCommand):
    help = (
        "Benchmark the dashboard's server time: the timeline of a decision with many "
        "mutations, /decisions/ pages at several depths of a large list, and the overview."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--decisions", type=int, default=100_000)
        parser.add_argument("--mutations", type=int, default=1000)
        parser.add_argument("--repeat", type=int, default=20)

    def handle(self, *args: Any, **options: Any) -> None:
        slug = f"pages-{new_id('org')[-8:].lower()}"
        org = Organization.objects.create(name=f"Page benchmark {slug}", slug=slug)
        workspace = Workspace.objects.create(org=org, name="Bench", slug="bench")
        agent = ServiceAccount.objects.create(org=org, workspace=workspace, name="bench-agent")
        user = get_user_model().objects.create_user(username=slug, password=None)
        Membership.objects.create(user=user, org=org, role=Role.VIEWER)
        total = options["decisions"]
        made: list[Decision] = []
        with Progress(transient=True) as progress:
            task = progress.add_task(f"creating {total} decisions", total=total)
            while len(made) < total:
                made += sample_data.decisions(agent, min(BATCH, total - len(made)))
                progress.update(task, completed=len(made))
        heavy = made[-1]
        sample_data.mutations(heavy, options["mutations"] // 2)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # fresh statistics, as autovacuum keeps them
                cursor.execute("ANALYZE")
        client = Client(HTTP_HOST=settings.ALLOWED_HOSTS[0])
        client.force_login(user)
        repeat = options["repeat"]

        def timed(label: str, url: str) -> None:
            client.get(url)  # warm caches, as a server that has been up a while
            samples = []
            for _ in range(repeat):
                start = time.perf_counter()
                response = client.get(url)
                samples.append((time.perf_counter() - start) * 1000)
                assert response.status_code == 200, (url, response.status_code)
            self.stdout.write(
                f"{label:<44} median {statistics.median(samples):6.1f} ms   "
                f"max {max(samples):6.1f} ms"
            )

        self.stdout.write(
            f"{total} decisions; timeline of one with {options['mutations']} mutations"
        )
        timed(f"timeline, {options['mutations']} mutations", f"/decisions/{heavy.id}/")
        newest_first = list(reversed(made))
        for depth in (0, 1_000, total // 2, total - 50):
            if depth >= total:
                continue
            url = "/decisions/"
            if depth:
                row = newest_first[depth - 1]
                url += f"?after={Cursor.encode(row.received_at, row.id)}"
            timed(f"/decisions/ page after row {depth}", url)
        timed(
            "/decisions/?status=completed&platform=google",
            "/decisions/?status=completed&platform=google",
        )
        timed("/decisions/?q=<an id>", f"/decisions/?q={newest_first[total // 2].id}")

        _overview_rows(workspace)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:  # as autovacuum leaves a table after inserts
                cursor.execute("VACUUM ANALYZE")
        # The decisions were all received in the last hours: every one is in the overview's
        # 24-hour window, its worst case. Its first request counts the whole window; the
        # next ones count the minutes since (controlplane/pages/overview_counts.py).
        cache.clear()
        start = time.perf_counter()
        assert client.get("/").status_code == 200
        first = (time.perf_counter() - start) * 1000
        self.stdout.write(f"{'overview /, first request (whole window)':<44} {first:13.1f} ms")
        timed(f"overview /, {total} decisions in its 24 h", "/")


def _overview_rows(workspace: Workspace) -> None:
    """Give the org what the overview lists: held runs, runs stuck in compensation_failed,
    a drill of each workflow, and two finished forward steps for each of its newest runs."""
    runs = list(
        WorkflowRun.objects.filter(org=workspace.org)
        .order_by("-created_at")
        .only("run_id", "idempotency_key", "created_at")[:STEPPED_RUNS]
    )
    now = timezone.now()
    WorkflowRun.objects.filter(pk__in=[r.pk for r in runs[:HELD]]).update(
        status=RunStatus.AWAITING_APPROVAL, finished_at=None
    )
    WorkflowRun.objects.filter(pk__in=[r.pk for r in runs[HELD : HELD + STUCK]]).update(
        status=RunStatus.COMPENSATION_FAILED, failed_step_id="credit_target_channel"
    )
    StepExecution.objects.bulk_create(
        (
            StepExecution(
                run=run,
                org_id=workspace.org_id,
                step_id=step,
                name=step,
                kind=StepExecution.Kind.FORWARD,
                position=position,
                status=StepExecution.Status.SUCCEEDED,
                attempts=1,
                idempotency_key=step_key(run.idempotency_key, step),
                started_at=now - timedelta(milliseconds=40 * n + 20 * position + 15),
                finished_at=now - timedelta(milliseconds=40 * n + 20 * position),
            )
            for n, run in enumerate(runs[HELD + STUCK :])
            for position, step in enumerate(("debit_source_channel", "credit_target_channel"))
        ),
        batch_size=BATCH,
    )
    for workflow in all_workflows():
        try:
            start_drill(
                workspace=workspace,
                workflow_id=workflow.id,
                step_id=workflow.steps[-1].id,
                fault="fatal",
                started_by="user:bench",
            )
        except DrillRefused:
            continue  # a workflow on live platforms: drills never touch those
