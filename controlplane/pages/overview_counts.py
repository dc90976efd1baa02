"""Hourly counts of the last 24 hours whose cost does not grow with the rows counted.

The rows the overview counts by the hour are stamped with the time of the transaction that
wrote them (a policy evaluation's ``evaluated_at``, a run's ``finished_at``) and do not
change afterwards. So once a minute is SETTLE in the past, its count is final: it is counted
once and kept in the cache, summed per hour, and each request counts only the minutes since
(one GROUP BY over a few minutes of rows instead of a whole day's). A process without the
cached counts, or past KEEP_SECONDS, counts the whole window again in that same one query.

What this relies on, and the callers guarantee: a counted row never changes the key it is
counted under (a run that can still leave its state, ``compensation_failed``, is counted
apart), writing transactions commit within SETTLE of their timestamp, and the servers'
clocks agree within SETTLE. Rows written with a past timestamp (sample data) are seen once
the kept counts expire.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.cache import cache
from django.db.models import Count, QuerySet
from django.db.models.functions import TruncMinute

SETTLE = timedelta(minutes=2)  # far longer than a writing transaction takes to commit
KEEP_SECONDS = 3600  # kept counts are recounted from the database at least hourly

Bucket = tuple[datetime, tuple[Any, ...]]  # (hour, values of the keys)


@dataclass(frozen=True)
class _Settled:
    """Counts per hour of every row stamped before ``until``."""

    until: datetime
    counts: Counter[Bucket]


def hourly_counts(
    name: str,
    rows: QuerySet[Any],
    *,
    moment: str,
    keys: Sequence[str],
    since: datetime,
    now: datetime,
) -> Counter[Bucket]:
    """Return how many of ``rows`` fall in each hour since ``since`` (hour-aligned), by
    the values of ``keys``; ``moment`` names the rows' timestamp. ``name`` identifies the
    counts in the cache, so it must name the rows' filter too (the organization's id)."""
    cache_key = f"overview-counts:v1:{name}"
    settled = cache.get(cache_key)
    if not isinstance(settled, _Settled) or settled.until < since:
        settled = _Settled(until=since, counts=Counter())
    fresh = (
        rows.filter(**{f"{moment}__gte": settled.until})
        .annotate(minute=TruncMinute(moment, tzinfo=UTC))  # the chart's hours are UTC
        .values("minute", *keys)
        .annotate(n=Count("*"))
        .order_by()
    )
    boundary = (now - SETTLE).replace(second=0, microsecond=0)
    kept: Counter[Bucket] = Counter(
        {bucket: n for bucket, n in settled.counts.items() if bucket[0] >= since}
    )
    live: Counter[Bucket] = Counter()
    for row in fresh:
        minute: datetime = row["minute"]
        bucket = (minute.replace(minute=0), tuple(row[key] for key in keys))
        (kept if minute < boundary else live)[bucket] += row["n"]
    if boundary > settled.until:
        cache.set(cache_key, _Settled(until=boundary, counts=kept), KEEP_SECONDS)
    return kept + live
