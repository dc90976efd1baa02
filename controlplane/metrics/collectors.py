"""The collectors ``/metrics`` registers for each scrape: the database's counts, and the
runners' in-memory counters.

Every series carries the organization's slug as ``org``.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, cast

from django.apps import apps
from django.db.models import Count, DurationField, ExpressionWrapper, F, Min, Q, Sum
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from controlplane.models import Decision, Organization
from mutations.models import LogHead
from runs import instrumentation
from runs.models import TERMINAL_STATUSES, RunStatus, StepExecution, WorkflowRun

# Seconds: a step's time runs from its first attempt to its outcome, retries (and their
# backoff, 1 s doubling to 30 s) included.
DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
MULTIPROCESS_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"

logger = logging.getLogger("controlplane.metrics")


def org_slugs() -> dict[str, str]:
    """Return every organization's slug by id."""
    return dict(Organization.objects.values_list("id", "slug"))


class DatabaseCollector(Collector):
    """Counts read from the database when scraped."""

    def __init__(self, slugs: dict[str, str]) -> None:
        self.slugs = slugs

    def org(self, org_id: str) -> str:
        return self.slugs.get(org_id, org_id)

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        yield self._decisions()
        yield from self._runs()
        yield from self._held(now)
        yield self._queue(now)
        yield from self._steps()
        yield from self._chain()
        yield from self._deliveries()

    def _decisions(self) -> Metric:
        family = CounterMetricFamily(
            "backstop_decisions",
            "Decisions received, by type and policy outcome (none: not evaluated).",
            labels=["org", "type", "outcome"],
        )
        rows = Decision.objects.values_list("org_id", "type", "evaluation__outcome").annotate(
            n=Count("id")
        )
        for org_id, kind, outcome, n in rows.order_by():
            family.add_metric([self.org(org_id), kind, outcome or "none"], n)
        return family

    def _runs(self) -> Iterator[Metric]:
        ended = CounterMetricFamily(
            "backstop_runs",
            "Workflow runs that reached a terminal status, by status (drills: drill=true).",
            labels=["org", "status", "drill"],
        )
        going = GaugeMetricFamily(
            "backstop_runs_in_progress",
            "Workflow runs not finished yet, by status.",
            labels=["org", "status", "drill"],
        )
        rows = WorkflowRun.objects.values_list("org_id", "status", "is_drill").annotate(
            n=Count("run_id")
        )
        for org_id, status, drill, n in rows.order_by():
            family = ended if status in TERMINAL_STATUSES else going
            family.add_metric([self.org(org_id), status, "true" if drill else "false"], n)
        yield ended
        yield going

    def _held(self, now: datetime) -> Iterator[Metric]:
        held = GaugeMetricFamily(
            "backstop_held_actions",
            "Runs awaiting a human approval.",
            labels=["org"],
        )
        oldest = GaugeMetricFamily(
            "backstop_held_action_oldest_age_seconds",
            "How long the oldest run awaiting approval has waited (0: none waits).",
            labels=["org"],
        )
        rows = (
            WorkflowRun.objects.filter(status=RunStatus.AWAITING_APPROVAL)
            .values_list("org_id")
            .annotate(n=Count("run_id"), since=Min("created_at"))
        )
        found = {org_id: (n, since) for org_id, n, since in rows.order_by()}
        for org_id in self.slugs:  # 0 for an org with none, rather than no series
            n, since = found.get(org_id, (0, now))
            held.add_metric([self.org(org_id)], n)
            oldest.add_metric([self.org(org_id)], max((now - since).total_seconds(), 0.0))
        yield held
        yield oldest

    def _queue(self, now: datetime) -> Metric:
        family = GaugeMetricFamily(
            "backstop_runner_queue_depth",
            "Runs a runner could claim now: runnable, due, and not leased (or lease expired).",
            labels=["org"],
        )
        rows = (
            WorkflowRun.objects.runnable()
            .filter(Q(leased_by="") | Q(lease_expires_at__lt=now), next_wake_at__lte=now)
            .values_list("org_id")
            .annotate(n=Count("run_id"))
        )
        found = dict(rows.order_by())
        for org_id in self.slugs:
            family.add_metric([self.org(org_id)], found.get(org_id, 0))
        return family

    def _steps(self) -> Iterator[Metric]:
        """Step and compensation duration histograms and retries, in one query."""
        took = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        finished = Q(
            status__in=[StepExecution.Status.SUCCEEDED, StepExecution.Status.FAILED],
            started_at__isnull=False,
            finished_at__isnull=False,
        )
        tried = Q(attempts__gt=0)
        buckets = {
            f"le_{n}": Count("id", filter=finished & Q(took__lte=timedelta(seconds=bound)))
            for n, bound in enumerate(DURATION_BUCKETS)
        }
        rows = (
            StepExecution.objects.alias(took=took)
            .values("org_id", "kind")
            .annotate(
                timed=Count("id", filter=finished),
                seconds=Sum("took", filter=finished),
                tries=Sum("attempts", filter=tried),
                tried=Count("id", filter=tried),
                **buckets,
            )
            .order_by()
        )
        forward = HistogramMetricFamily(
            "backstop_step_duration_seconds",
            "Forward steps, from the first attempt to the outcome (retries included).",
            labels=["org"],
        )
        compensation = HistogramMetricFamily(
            "backstop_compensation_duration_seconds",
            "Compensations, from the first attempt to the outcome (retries included).",
            labels=["org"],
        )
        retries = CounterMetricFamily(
            "backstop_step_retries",
            "Attempts beyond the first, of steps and compensations (kind).",
            labels=["org", "kind"],
        )
        for found in rows:
            row = cast(dict[str, Any], found)  # the bucket keys are built, not literal
            org = self.org(row["org_id"])
            family = forward if row["kind"] == StepExecution.Kind.FORWARD else compensation
            cumulative = [
                (_bound(bound), float(row[f"le_{n}"])) for n, bound in enumerate(DURATION_BUCKETS)
            ]
            seconds: timedelta | None = row["seconds"]
            family.add_metric(
                [org],
                [*cumulative, ("+Inf", float(row["timed"]))],
                sum_value=seconds.total_seconds() if seconds else 0.0,
            )
            retries.add_metric([org, row["kind"]], (row["tries"] or 0) - row["tried"])
        yield forward
        yield compensation
        yield retries

    def _chain(self) -> Iterator[Metric]:
        broken = GaugeMetricFamily(
            "backstop_chain_broken",
            "1 when the Mutation Log chain failed verification, else 0.",
            labels=["org"],
        )
        verified = GaugeMetricFamily(
            "backstop_chain_verified_sequence",
            "The last Mutation Log entry verified.",
            labels=["org"],
        )
        head = GaugeMetricFamily(
            "backstop_chain_sequence", "The newest Mutation Log entry.", labels=["org"]
        )
        verified_at = GaugeMetricFamily(
            "backstop_chain_verified_timestamp_seconds",
            "When the chain was last verified (Unix time).",
            labels=["org"],
        )
        rows = LogHead.objects.values_list(
            "org_id", "broken_at", "verified_sequence", "sequence", "verified_at"
        )
        for org_id, broken_at, verified_sequence, sequence, at in rows:
            org = self.org(org_id)
            broken.add_metric([org], 0 if broken_at is None else 1)
            verified.add_metric([org], verified_sequence)
            head.add_metric([org], sequence)
            if at is not None:
                verified_at.add_metric([org], at.timestamp())
        yield from (broken, verified, head, verified_at)

    def _deliveries(self) -> Iterator[Metric]:
        try:
            delivery = apps.get_model("controlplane", "Delivery")
        except LookupError:  # webhooks not installed
            return
        family = GaugeMetricFamily(
            "backstop_webhook_deliveries",
            "Webhook deliveries by status (failed: given up after the retries).",
            labels=["org", "status"],
        )
        rows = delivery.objects.values_list("org_id", "status").annotate(n=Count("pk"))
        for org_id, status, n in rows.order_by():
            family.add_metric([self.org(org_id), status], n)
        yield family


def _bound(value: float) -> str:
    return repr(float(value))


class RunnerCollector(Collector):
    """The runners' in-memory counters (lease losses), with ``org`` for their org id: from
    every process's files under ``PROMETHEUS_MULTIPROC_DIR`` when it is set, else this
    process's own (a runner in the web process, as in tests)."""

    def __init__(self, slugs: dict[str, str]) -> None:
        self.slugs = slugs

    def collect(self) -> Iterator[Metric]:
        if os.environ.get(MULTIPROCESS_VARIABLE):
            from prometheus_client.multiprocess import MultiProcessCollector

            try:
                found: Iterable[Metric] = MultiProcessCollector(None).collect()
            except ValueError as error:  # the directory is missing: the rest still shows
                logger.error("runner metrics unavailable: %s", error)
                return
        else:
            found = instrumentation.LEASE_LOSSES.collect()
        for metric in found:
            if metric.name.startswith("backstop_"):
                yield self._relabel(metric)

    def _relabel(self, metric: Metric) -> Metric:
        out = Metric(metric.name, metric.documentation, metric.type, metric.unit)
        merged: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        for sample in metric.samples:
            if sample.name.endswith("_created"):
                continue  # per process, meaningless once summed
            labels: dict[str, Any] = dict(sample.labels)
            org_id = labels.pop("org_id", None)
            if org_id is not None:
                labels["org"] = self.slugs.get(org_id, org_id)
            labels.pop("pid", None)
            merged[(sample.name, tuple(sorted(labels.items())))] += sample.value
        for (name, labels_items), value in merged.items():
            out.add_sample(name, dict(labels_items), value)
        return out
