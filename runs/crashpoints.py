"""Named places where a test can have the runner process killed, to prove crash safety.

Set ``BACKSTOP_TEST_CRASH_AT=<point>`` (or ``<point>:<n>`` for the n-th time the runner
passes it) in a runner's environment; outside production the runner then SIGKILLs
itself there. In normal operation the setting is empty and this costs one comparison.
"""

import os
import signal
from collections import Counter

from django.conf import settings

POINTS = (
    "after_claim",
    "before_platform_call",
    "after_platform_call",
    "after_record",
    "between_compensations",
)
_passes: Counter[str] = Counter()


def crash_point(name: str) -> None:
    target: str = settings.BACKSTOP_TEST_CRASH_AT
    if not target:
        return
    point, _, nth = target.partition(":")
    if point != name:
        return
    _passes[name] += 1
    if _passes[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
