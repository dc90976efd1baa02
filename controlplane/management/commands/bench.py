from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from controlplane.devtools.bench import Bench


class Command(BaseCommand):
    help = (
        "Benchmark the runners on PostgreSQL: submit N decisions (70% complete, 30% fail on "
        "the last step and compensate), drain them with K runner processes, and print "
        "throughput, commits per step, wake latency and the raw step-transaction limit."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--decisions", type=int, default=2000)
        parser.add_argument("--runners", type=int, default=2)
        parser.add_argument("--wake-samples", type=int, default=200)

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError(
                "bench measures PostgreSQL (commits come from pg_stat_database): "
                "set DATABASE_URL=postgres://..."
            )
        result = Bench(
            decisions=options["decisions"],
            runners=options["runners"],
            wake_samples=options["wake_samples"],
            out=self.stdout.write,
        ).run()
        r = result
        lines = [
            f"decisions                 {r.decisions} with {r.runners} runner process(es)",
            f"drain time                {r.seconds:.2f} s",
            f"sagas/s                   {r.sagas_per_second:.0f}",
            f"steps/s                   {r.steps_per_second:.0f}  ({r.steps} steps, "
            f"{r.forward_steps} forward)",
            f"commits per forward step  {r.commits_per_forward_step:.2f}  "
            f"({r.commits} commits; {r.commits_per_step:.2f} per step of any kind)",
            f"wake latency              p50 {r.wake_p50_ms:.1f} ms, p99 {r.wake_p99_ms:.1f} ms",
            f"raw step transaction      {r.raw_tps:.0f} TPS with {r.runners} client(s)",
            f"steps/s : raw TPS         {r.ratio:.0%}",
        ]
        self.stdout.write("\n".join(lines))
