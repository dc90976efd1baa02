import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from controlplane.intake.serializers import DecisionInSerializer
from controlplane.intake.submit import POLICY_DIR, submit_decision
from controlplane.models import (
    Decision,
    Membership,
    Organization,
    Role,
    ServiceAccount,
    Workspace,
)
from controlplane.policy.versions import activate_policy
from mutations.ids import new_id
from mutations.models import SandboxCampaign, SandboxFault
from mutations.services import Surface
from runs.keys import FIRST_ATTEMPT, compensation_key, run_key, step_calls_prefix
from runs.runner import Worker
from tests.platforms import platforms  # noqa: F401 - fixtures for every test folder
from tests.processes import runners, web  # noqa: F401
from tests.temporal import temporal, temporal_server  # noqa: F401

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load_fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> None:
    """Let the test database be emptied between tests: its evidence tables refuse TRUNCATE
    unless a session allows it (mutations/migrations/0006_append_only_triggers.py)."""
    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    f"ALTER DATABASE {connection.settings_dict['NAME']} "
                    "SET backstop.allow_truncate = 'on'"
                )
            connection.close()


@pytest.fixture(autouse=True)
def _no_retry_sleep(settings: Any) -> None:
    settings.BACKSTOP_RETRY_DELAY_SCALE = 0
    settings.BACKSTOP_RUNNER_POLL_SECONDS = 0.01
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def org(db: None) -> Organization:
    return Organization.objects.create(name="Acme", slug="acme")


@pytest.fixture
def workspace(org: Organization) -> Workspace:
    ws = Workspace.objects.create(org=org, name="Default", slug="default")
    activate_policy(
        workspace=ws, text=(POLICY_DIR / "budget_policy_v1.yaml").read_text(), activated_by="test"
    )
    for platform, budget in (("meta", 20_000_000_000), ("google", 12_000_000_000)):
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


def command(name: str, *args: Any, **options: Any) -> str:
    """Run a management command as a user would and return what it printed."""
    out = io.StringIO()
    call_command(name, *args, stdout=out, stderr=out, **options)
    return out.getvalue()


def drain() -> int:
    """Run a real runner in this process until no run is left to execute."""
    return Worker().run(until_idle=True)


def submit(agent: ServiceAccount, document: dict[str, Any]) -> Decision:
    serializer = DecisionInSerializer(data=document)
    serializer.is_valid(raise_exception=True)
    return submit_decision(
        workspace=agent.workspace, document=document, requested_by=agent.actor, surface=Surface.API
    ).decision


def first_run_key(document: dict[str, Any]) -> str:
    """Return the key of a decision's first run; its platform calls' keys start with it."""
    return run_key(document["id"], FIRST_ATTEMPT)


def rebalance(
    decision_id: str | None = None,
    *,
    source: str = "meta",
    target: str = "google",
    amount: float = 800,
    confidence: float = 0.74,
) -> dict[str, Any]:
    """Return a rebalance_spend decision like the seed's, with its own id."""
    document = load_fixture("seed_decision.json")
    document["id"] = decision_id or new_id("dec")
    document["confidence"] = confidence
    document["action"].update(source_channel=source, target_channel=target, amount=amount)
    return document


def plan_stuck_compensation(
    agent: ServiceAccount, document: dict[str, Any], *, undo: str = SandboxFault.Kind.TRANSIENT
) -> None:
    """Make the rebalance's credit fail for good, and the compensation of its debit fail:
    ``undo`` transient keeps it retrying until its attempts are used up, fatal at once."""
    key = first_run_key(document)
    credit = step_calls_prefix(key, "credit_target_channel")
    SandboxFault.objects.create(
        org=agent.org, platform="google", kind=SandboxFault.Kind.FATAL, key_prefix=credit
    )
    debit_undo = compensation_key(key, "debit_source_channel")
    SandboxFault.objects.create(org=agent.org, platform="meta", kind=undo, key_prefix=debit_undo)


def budget(org: Organization, platform: str) -> int:
    return SandboxCampaign.objects.get(org=org, platform=platform).daily_budget_micros


ALLOW_ALL_POLICY = """\
version: allow_all
rules:
  - {id: allow-all, when: {side_effect: true}, decision: allow}
"""


def allow_everything(workspace: Workspace) -> None:
    """Activate a policy that lets test workflows of any decision type run."""
    activate_policy(workspace=workspace, text=ALLOW_ALL_POLICY, activated_by="test")
