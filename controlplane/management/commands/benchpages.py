import statistics
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import connection
from django.test import Client
from rich.progress import Progress

from controlplane.devtools import sample_data
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

BATCH = 5000


class Command(BaseCommand):
    help = (
        "Benchmark the dashboard's server time: the timeline of a decision with many "
        "mutations, and /decisions/ pages at several depths of a large list."
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
