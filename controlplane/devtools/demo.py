"""The demo organization: people, an agent, a policy, sandbox campaigns and the seed scenario."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model
from django.db import transaction

from controlplane.devtools.demo_access import load_access_scenario
from controlplane.intake.serializers import DecisionInSerializer
from controlplane.intake.submit import POLICY_DIR, Submission, submit_decision
from controlplane.models import Membership, Organization, Role, ServiceAccount, Workspace
from controlplane.policy.versions import activate_policy
from mutations.connectors.sandbox import SANDBOX_PLATFORMS
from mutations.models import SandboxCampaign, SandboxFault
from mutations.services import Surface
from runs.keys import FIRST_ATTEMPT, run_key, step_calls_prefix

DEMO_DATA = Path(__file__).resolve().parent.parent / "demo_data"
DEMO_USERS = {"operator": Role.OPERATOR, "approver": Role.APPROVER, "admin": Role.ADMIN}
AGENT_NAME = "decision-runtime-cron"
SEED_DECISION_ID = "dec_01J1B7K9C8N3RXQK9VPYZW2QF4"
DEMO_BUDGETS_MICROS = {"meta": 20_000_000_000, "google": 12_000_000_000}


def demo_password() -> str:
    return os.environ.get("BACKSTOP_DEMO_PASSWORD", "backstop-demo")


@dataclass(frozen=True)
class Demo:
    org: Organization
    workspace: Workspace
    agent: ServiceAccount
    submissions: list[Submission]


def load_demo() -> Demo:
    """Create the demo organization and submit its decisions; safe to run again."""
    with transaction.atomic():
        org, _ = Organization.objects.get_or_create(slug="demo", defaults={"name": "Demo"})
        workspace, _ = Workspace.objects.get_or_create(
            org=org, slug="default", defaults={"name": "Default"}
        )
        _add_people(org)
        agent, _ = ServiceAccount.objects.get_or_create(
            org=org, name=AGENT_NAME, defaults={"workspace": workspace}
        )
        activate_policy(
            workspace=workspace,
            text=(POLICY_DIR / "budget_policy_v1.yaml").read_text(),
            activated_by="demo",
        )
        _prepare_sandbox(org)
    submissions = []
    for path in sorted(DEMO_DATA.glob("*.json")):
        document = json.loads(path.read_text())
        serializer = DecisionInSerializer(data=document)
        serializer.is_valid(raise_exception=True)
        submissions.append(
            submit_decision(
                workspace=workspace,
                document=document,
                requested_by=agent.actor,
                surface=Surface.CLI,
            )
        )
    access = load_access_scenario(
        workspace=workspace,
        agent=agent,
        approver=Membership.objects.select_related("user").get(org=org, user__username="approver"),
        document=json.loads((DEMO_DATA / "access" / "grant_access.json").read_text()),
    )
    if access is not None:
        submissions.append(access)
    return Demo(org=org, workspace=workspace, agent=agent, submissions=submissions)


def _add_people(org: Organization) -> None:
    """Give each demo role a user of its own, with the demo password."""
    users = get_user_model().objects
    for username, role in DEMO_USERS.items():
        user, created = users.get_or_create(username=username)
        if created:
            user.set_password(demo_password())
            user.is_staff = role == Role.ADMIN
            user.is_superuser = role == Role.ADMIN
            user.save()
        Membership.objects.get_or_create(user=user, org=org, defaults={"role": role})


def _prepare_sandbox(org: Organization) -> None:
    """Open the sandbox campaigns and plan the seed scenario's fault."""
    for platform in SANDBOX_PLATFORMS:
        SandboxCampaign.objects.get_or_create(
            org=org,
            platform=platform,
            campaign_id=f"{platform}-all-markets",
            defaults={
                "name": f"{platform.title()} — all markets",
                "market": "all",
                "daily_budget_micros": DEMO_BUDGETS_MICROS[platform],
            },
        )
    # The seed scenario: Google keeps answering 429 until the credit's retries run out.
    SandboxFault.objects.get_or_create(
        org=org,
        platform="google",
        key_prefix=step_calls_prefix(
            run_key(SEED_DECISION_ID, FIRST_ATTEMPT), "credit_target_channel"
        ),
        defaults={"kind": SandboxFault.Kind.RATE_LIMIT, "retry_after_seconds": 120},
    )
