"""The drawing's text alternative: a table row per attempt (step, kind, attempt, start,
duration, outcome, error), built as a string like the drawing itself, since a run may list
a hundred attempts on every refresh of its page."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from controlplane.pages.attempts import RETRIED, AttemptView
from controlplane.templatetags.backstop import duration, label, utc

ABSOLUTE = "%Y-%m-%d %H:%M:%S UTC"  # the title of every relative time (the `when` filter's)


def outcome_words(attempt: AttemptView) -> str:
    return "Failed, tried again" if attempt.outcome == RETRIED else label(attempt.outcome)


def rows(attempts: Iterable[AttemptView], start: datetime) -> SafeString:
    """Return the table body's rows; each start is an offset from ``start`` (the run's
    creation), its absolute time in the title."""
    return mark_safe("".join(_row(a, start) for a in attempts))


def _row(a: AttemptView, start: datetime) -> str:
    """Return one row; every value from the records is escaped."""
    if a.repeats:
        error = f'<span class="muted">same as attempt {a.repeats}</span>'
    elif a.error:
        error = f'<span class="error">{escape(a.error)}</span>'
    else:
        error = ""
    if a.request_id:
        error += f" <code>{escape(a.request_id)}</code>"
    return (
        f'<tr><th scope="row"><code>{escape(a.name)}</code></th>'
        f'<td data-label="Kind">{escape(label(a.kind))}</td>'
        f'<td class="num" data-label="Attempt">{a.number or "\u2014"}</td>'
        f'<td data-label="Start"><time datetime="{utc(a.started_at)}" '
        f'title="{a.started_at.astimezone(UTC).strftime(ABSOLUTE)}">'
        f"+{duration(a.started_at - start) or '0 ms'}</time></td>"
        f'<td class="num" data-label="Duration">{duration(a.duration) or "0 ms"}</td>'
        f'<td data-label="Outcome"><span class="badge badge-{escape(a.outcome)}">'
        f"{escape(outcome_words(a))}</span></td>"
        f'<td data-label="Error">{error}</td></tr>'
    )
