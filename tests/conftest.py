import json
from pathlib import Path
from typing import Any

import pytest

from controlplane.models import Membership, Organization, Role, ServiceAccount, Workspace
from controlplane.services import POLICY_DIR, activate_policy
from mutations.models import SandboxCampaign

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(autouse=True)
def _no_retry_sleep(settings: Any) -> None:
    settings.BACKSTOP_RETRY_DELAY_SCALE = 0
    settings.BACKSTOP_RUNNER_POLL_SECONDS = 0.01


@pytest.fixture
def org(db: None) -> Organization:
    return Organization.objects.create(name="Acme", slug="acme")


@pytest.fixture
def workspace(org: Organization) -> Workspace:
    ws = Workspace.objects.create(org=org, name="Default", slug="default")
    activate_policy(
        workspace=ws, text=(POLICY_DIR / "budget_policy_v1.yaml").read_text(), activated_by="test"
    )
    for platform, budget in (("meta", 5_000_000_000), ("google", 3_000_000_000)):
        SandboxCampaign.objects.create(
            org=org,
            platform=platform,
            campaign_id=f"{platform}-all-markets",
            name=f"{platform} all",
            market="all",
            daily_budget_micros=budget,
        )
    return ws


@pytest.fixture
def agent(workspace: Workspace) -> ServiceAccount:
    return ServiceAccount.objects.create(
        org=workspace.org, workspace=workspace, name="decision-runtime-cron"
    )


@pytest.fixture
def member(django_user_model: Any, workspace: Workspace) -> Any:
    def make(username: str, role: str = Role.OPERATOR, org: Organization | None = None) -> Any:
        user = django_user_model.objects.create_user(username=username, password="pw")
        Membership.objects.create(user=user, org=org or workspace.org, role=role)
        return user

    return make
