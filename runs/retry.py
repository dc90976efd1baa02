"""Retry policies: capped exponential backoff with jitter, honouring ``retry_after``."""

from __future__ import annotations

import random
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    initial_interval: float = 1.0  # seconds before the second attempt
    backoff_coefficient: float = 2.0
    maximum_interval: float = 30.0  # seconds; backoff never waits longer
    jitter: float = 0.2  # +/- this fraction of the delay
    retry_after_cap: float = 60.0  # seconds of a platform's retry_after we are willing to wait

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1.")
        if self.initial_interval < 0 or self.maximum_interval < self.initial_interval:
            raise ValueError("RetryPolicy needs 0 <= initial_interval <= maximum_interval.")

    def delay(
        self, attempt: int, *, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Return the seconds to wait after failed attempt number ``attempt`` (1-based)."""
        base = min(
            self.maximum_interval,
            self.initial_interval * self.backoff_coefficient ** (attempt - 1),
        )
        spread = base * self.jitter
        delay = base + (rng or random).uniform(-spread, spread)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_cap))
        return max(0.0, delay) * settings.BACKSTOP_RETRY_DELAY_SCALE
