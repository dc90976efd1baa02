"""Template filters shared by every page: times, durations, labels, JSON."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from mutations.timestamps import UTC_FORMAT

register = template.Library()

# Labels that read better than the status itself; others are the status in words.
LABELS = {
    "allow": "Allowed",
    "deny": "Denied",
    "require_human": "Needs approval",
    "awaiting_approval": "Awaiting approval",
    "compensation_failed": "Compensation failed",
    "rolled_back": "Rolled back",
}
MINUTE, HOUR, DAY, WEEK = 60, 3600, 86_400, 604_800


@register.filter
def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False)


@register.filter
def utc(value: Any) -> str:
    """Format an aware datetime the way the API does: 2026-04-22T18:12:11Z."""
    return value.strftime(UTC_FORMAT) if value else ""


@register.filter
def label(value: Any) -> str:
    """Return a status or outcome in words: ``compensation_failed`` -> Compensation failed."""
    text = str(value or "")
    return LABELS.get(text, text.replace("_", " ").capitalize())


@register.filter
def actor_kind(actor: str) -> str:
    """Return who made a change, in a word: agent, person, schedule, or the actor itself."""
    kind = str(actor).partition(":")[0]
    return {"agent": "agent", "user": "person", "schedule": "schedule"}.get(kind, str(actor))


@register.filter
def when(value: datetime | None) -> SafeString | str:
    """Render a moment as a relative time ("3 min ago") in a ``<time>`` element whose
    title gives the absolute time in UTC."""
    if not value:
        return ""
    absolute = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        value.strftime(UTC_FORMAT),
        absolute,
        relative(value, timezone.now()),
    )


def relative(moment: datetime, now: datetime) -> str:
    """Return ``moment`` relative to ``now``: "just now", "5 min ago", "in 2 h", or the
    date once it is more than a week away."""
    seconds = (now - moment).total_seconds()
    ago = seconds >= 0
    seconds = abs(seconds)
    if seconds < 10:
        return "just now"
    if seconds >= WEEK:
        return moment.astimezone(UTC).strftime("%Y-%m-%d")
    if seconds < MINUTE:
        text = f"{int(seconds)} s"
    elif seconds < HOUR:
        text = f"{int(seconds // MINUTE)} min"
    elif seconds < DAY:
        text = f"{int(seconds // HOUR)} h"
    else:
        text = f"{int(seconds // DAY)} d"
    return f"{text} ago" if ago else f"in {text}"


@register.filter
def duration(value: float | timedelta | None) -> str:
    """Render a length of time (seconds, or a timedelta) the way a person says it:
    340 ms, 4.2 s, 3 min 5 s, 2 h 10 min, 3 d 4 h, 1 week."""
    if value is None or value == "":
        return ""
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < MINUTE:
        return f"{int(seconds)} s"
    if seconds >= WEEK and seconds % WEEK == 0:
        weeks = int(seconds // WEEK)
        return f"{weeks} week{'s' if weeks != 1 else ''}"
    whole = int(seconds)
    if whole >= DAY:
        big, small, names = whole // DAY, whole % DAY // HOUR, ("d", "h")
    elif whole >= HOUR:
        big, small, names = whole // HOUR, whole % HOUR // MINUTE, ("h", "min")
    else:
        big, small, names = whole // MINUTE, whole % MINUTE, ("min", "s")
    return f"{big} {names[0]}" + (f" {small} {names[1]}" if small else "")


@register.filter
def short_time(value: Any) -> str:
    return value.strftime("%H:%M:%SZ") if value else ""


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    return mapping.get(key, []) if mapping else []
