"""The Slack incoming-webhook form of a delivery: a line of text, a block, and a link."""

from __future__ import annotations

from typing import Any

from django.conf import settings

TITLES = {
    "approval.requested": ":raised_hand: A run waits for an approver",
    "approval.decided": ":ballot_box_with_check: A held run was decided",
    "run.completed": ":white_check_mark: Run completed",
    "run.compensated": ":leftwards_arrow_with_hook: Run compensated",
    "run.compensation_failed": ":rotating_light: Compensation failed: a person must finish it",
    "drill.failed": ":x: Drill failed",
    "chain.broken": ":rotating_light: The Mutation Log's chain is broken",
}


def link_of(payload: dict[str, Any]) -> str:
    """Return the dashboard page a person opens for this event."""
    base = settings.BACKSTOP_PUBLIC_URL
    kind = payload.get("kind", "")
    if kind == "approval.requested":
        return f"{base}/approvals/"
    if kind == "drill.failed" and payload.get("drill_id"):
        return f"{base}/drills/{payload['drill_id']}/"
    if payload.get("decision_id"):
        return f"{base}/decisions/{payload['decision_id']}/"
    return f"{base}/"


def slack_message(payload: dict[str, Any]) -> dict[str, Any]:
    """Return the message Slack shows for a delivery's payload."""
    title = TITLES.get(payload.get("kind", ""), payload.get("kind", "Backstop"))
    detail = payload.get("summary") or payload.get("decision_id") or payload.get("reason") or ""
    link = link_of(payload)
    text = f"{title}: {detail} <{link}|Open in Backstop>" if detail else f"{title} <{link}|Open>"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{title}*\n{detail}".strip()}},
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Open"}, "url": link}
                ],
            },
        ],
    }
