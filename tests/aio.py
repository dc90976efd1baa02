"""Running a test's asyncio scenario from a synchronous test."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def run_async[T](scenario: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to its end in a thread of its own: the browser tests' Playwright
    keeps an event loop running in the main thread for the whole session."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, scenario).result()
