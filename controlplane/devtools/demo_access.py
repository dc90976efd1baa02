"""The demo's second scenario: an access grant across three HTTP platforms (the reference
platform server) whose third step fails, so the first two are undone in reverse order."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx

from controlplane.intake.approvals import decide_held_run
from controlplane.intake.serializers import DecisionInSerializer
from controlplane.intake.submit import Submission, submit_decision
from controlplane.models import Membership, ServiceAccount, Workspace
from mutations.connectors import get_connector
from mutations.connectors.http import HttpConnector
from mutations.services import Surface
from runs.models import Approval
from runs.workflows import workflow_for

logger = logging.getLogger("controlplane.devtools.demo")

# What the three services hold before the grant: the cost center has no seat left, so the
# third step is refused for good and the run is compensated.
PLATFORM_STATE: dict[str, list[dict[str, Any]]] = {
    "iam": [{"target": {"group": "payments-oncall"}, "state": {"members": ["lee.chen"]}}],
    "ticketing": [],
    "billing": [{"target": {"account": "cc-payments"}, "state": {"seats_available": 0}}],
}
SEED_WAIT_SECONDS = 15.0  # the platform server may still be starting


def load_access_scenario(
    *, workspace: Workspace, agent: ServiceAccount, approver: Membership, document: dict[str, Any]
) -> Submission | None:
    """Seed the reference platforms and submit the access grant, approved by the demo's
    approver; skip (return None) when the demo's platforms or workflow are not configured."""
    if workflow_for(document["type"]) is None:
        return None
    servers = _reference_servers()
    if servers is None or not _seed(servers):
        return None
    serializer = DecisionInSerializer(data=document)
    serializer.is_valid(raise_exception=True)
    submission = submit_decision(
        workspace=workspace, document=document, requested_by=agent.actor, surface=Surface.CLI
    )
    run = submission.decision.runs.first()
    if run is not None and Approval.objects.filter(run=run, status="pending").exists():
        decide_held_run(
            membership=approver,
            user=approver.user,
            run=run,
            approve=True,
            comment="Demo: Ana starts her on-call week on Monday.",
            surface=Surface.CLI,
        )
    return submission


def _reference_servers() -> dict[str, str] | None:
    """Return each demo platform's base URL, or None when one is not an HTTP platform."""
    urls = {}
    for name in PLATFORM_STATE:
        try:
            connector = get_connector(name)
        except LookupError:
            return None
        if not isinstance(connector, HttpConnector):
            return None
        urls[name] = connector.config.base_url
    return urls


def _seed(servers: dict[str, str]) -> bool:
    deadline = time.monotonic() + SEED_WAIT_SECONDS
    pending = dict(servers)
    while pending:
        for name, url in list(pending.items()):
            try:
                body = json.dumps({"objects": PLATFORM_STATE[name]})
                httpx.post(f"{url}/_control/reset", timeout=2).raise_for_status()
                httpx.post(
                    f"{url}/_control/seed",
                    content=body,
                    headers={"Content-Type": "application/json"},
                    timeout=2,
                ).raise_for_status()
                del pending[name]
            except httpx.HTTPError as error:
                if time.monotonic() > deadline:
                    logger.warning(
                        "demo: the access scenario is skipped: %s at %s did not answer (%s); "
                        "start it with `manage.py platformserver`",
                        name,
                        url,
                        error,
                    )
                    return False
        if pending:
            time.sleep(0.2)
    return True
