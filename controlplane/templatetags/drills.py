"""Filters for the drills pages: who started a drill and how often a plan repeats, in words."""

from django import template

from controlplane.templatetags.backstop import DAY, HOUR, WEEK, duration

register = template.Library()

NAMED_PERIODS = {HOUR: "hour", DAY: "day", WEEK: "week"}


@register.filter
def starter(started_by: str) -> str:
    """Return who started a drill as a person reads it: ``user:ana`` -> ana,
    ``schedule:user:ana`` -> ana's schedule, ``agent:cron`` -> agent cron."""
    kind, _, name = str(started_by).partition(":")
    if kind == "user" and name:
        return name
    if kind == "schedule" and name:
        return f"{starter(name)}'s schedule"
    if kind == "agent" and name:
        return f"agent {name}"
    if kind == "cli" and not name:
        return "the drill command"
    return str(started_by)


@register.filter
def every(seconds: int) -> str:
    """Return how often a plan repeats: every week, every day, every 3 d."""
    return f"every {NAMED_PERIODS.get(int(seconds)) or duration(seconds)}"
