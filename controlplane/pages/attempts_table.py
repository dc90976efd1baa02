"""The drawing's text alternative: a table row per attempt (step, kind, attempt, start,
duration, outcome, error), built as a string like the drawing itself, since a run may list
a hundred attempts on every refresh of its page."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from controlplane.pages.attempts import RETRIED, AttemptView
from controlplane.templatetags.backstop import duration, label, utc

ABSOLUTE = "%Y-%m-%d %H:%M:%S UTC"  # the title of every relative time (the `when` filter's)


def outcome_words(attempt: AttemptView) -> str:
    return "Failed, tried again" if attempt.outcome == RETRIED else label(attempt.outcome)


def rows(attempts: Iterable[AttemptView], start: datetime) -> SafeString:
    """Return the table body's rows; each start is an offset from ``start`` (the run's
    creation), its absolute time in the title."""
    return format_html_join("", "{}", ((_row(a, start),) for a in attempts))


def _row(a: AttemptView, start: datetime) -> SafeString:
    if a.repeats:
        error = format_html('<span class="muted">same as attempt {}</span>', a.repeats)
    elif a.error:
        error = format_html('<span class="error">{}</span>', a.error)
    else:
        error = mark_safe("")
    if a.request_id:
        error = format_html("{} <code>{}</code>", error, a.request_id)
    return format_html(
        '<tr><th scope="row"><code>{}</code></th><td data-label="Kind">{}</td>'
        '<td class="num" data-label="Attempt">{}</td>'
        '<td data-label="Start"><time datetime="{}" title="{}">+{}</time></td>'
        '<td class="num" data-label="Duration">{}</td>'
        '<td data-label="Outcome"><span class="badge badge-{}">{}</span></td>'
        '<td data-label="Error">{}</td></tr>',
        a.name,
        label(a.kind),
        a.number or "\u2014",
        utc(a.started_at),
        a.started_at.astimezone(UTC).strftime(ABSOLUTE),
        duration(a.started_at - start) or "0 ms",
        duration(a.duration) or "0 ms",
        a.outcome,
        outcome_words(a),
        error,
    )
