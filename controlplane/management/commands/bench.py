from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

from controlplane.devtools.bench import run_bench
from controlplane.devtools.bench_engines import engine_list
from controlplane.devtools.bench_report import report
from mutations.platformserver.cli import MAX_LATENCY_MS


def runner_counts(text: str) -> list[int]:
    """Parse ``--runners 1,2,4``: positive whole numbers, comma-separated."""
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise CommandError(f"--runners {text!r}: give runner counts such as 2 or 1,2,4")
    return counts


class Command(BaseCommand):
    help = (
        "Benchmark the runners on PostgreSQL: submit N decisions (70% complete, 30% fail on "
        "the last step and compensate), drain them with K runner processes of each engine "
        "(a row per engine and K), "
        "and print throughput, commits per step, wake latency, the raw step-transaction "
        "limit, and the runners' own SQL statements, round trips, commits and CPU per "
        "forward step and peak memory."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--decisions", type=int, default=2000, help="Decisions per row.")
        parser.add_argument(
            "--runners",
            default="2",
            help="Runner processes, or a comma-separated list for a row each (1,2,4).",
        )
        parser.add_argument(
            "--engine",
            help="builtin (Backstop's runners), temporal (runworkflows --engine temporal "
            "workers on TEMPORAL_ADDRESS, or on a dev server the bench starts when it does "
            "not answer), or builtin,temporal for both on the same mix. Default: "
            "BACKSTOP_ENGINE.",
        )
        parser.add_argument(
            "--wake-samples",
            type=int,
            default=200,
            help="Decisions submitted one at a time to idle runners (0 skips wake latency).",
        )
        parser.add_argument(
            "--raw-seconds",
            type=float,
            default=5.0,
            help="How long to measure the bare step transaction (0 skips it).",
        )
        parser.add_argument(
            "--in-flight",
            type=int,
            help="Each runner's --in-flight (platform calls at the same time); default: "
            "the runners' own (BACKSTOP_RUNNER_IN_FLIGHT).",
        )
        parser.add_argument(
            "--platform-latency-ms",
            type=float,
            help="Run the mix on reference HTTP platform servers answering after this delay, "
            "instead of the sandbox platforms in the database.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError(
                "bench measures PostgreSQL (commits come from pg_stat_database): "
                "set DATABASE_URL=postgres://..."
            )
        counts = runner_counts(options["runners"])
        try:
            engines = engine_list(options["engine"] or settings.BACKSTOP_ENGINE)
        except ValueError as error:
            raise CommandError(str(error)) from None
        latency = options["platform_latency_ms"]
        if latency is not None and not 0 <= latency <= MAX_LATENCY_MS:
            raise CommandError(f"--platform-latency-ms: give 0 to {MAX_LATENCY_MS}")
        if options["in_flight"] is not None and options["in_flight"] < 1:
            raise CommandError("--in-flight must be at least 1")
        if options["decisions"] < 1 or options["wake_samples"] < 0 or options["raw_seconds"] < 0:
            raise CommandError(
                "--decisions must be at least 1; --wake-samples and --raw-seconds 0 or more"
            )
        servers: list[str] = []

        def on_temporal(server: str) -> None:
            servers.append(server)
            self.stderr.write(f"temporal rows on {server}")

        label, rows = run_bench(
            decisions=options["decisions"],
            runner_counts=counts,
            wake_samples=options["wake_samples"],
            raw_seconds=options["raw_seconds"],
            platform_latency_ms=latency,
            in_flight=options["in_flight"],
            engines=engines,
            on_temporal=on_temporal,
        )
        self.stdout.write(report(label, options["decisions"], rows, *servers))
