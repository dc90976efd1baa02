from typing import Any

import pytest

from controlplane.models import Organization, Workspace
from mutations.connectors import (
    AmbiguousOutcome,
    Change,
    FatalError,
    RateLimited,
    get_connector,
)
from mutations.models import (
    AppendOnlyError,
    Mutation,
    SandboxCampaign,
    SandboxFault,
    SandboxOperation,
)
from tests.conftest import budget, drain, rebalance, submit

pytestmark = pytest.mark.django_db

DEBIT = Change(
    platform="meta",
    mutation_type="update_budget",
    payload={"daily_budget_delta_micros": -800_000_000},
    target={"market": "all"},
)


def apply(org: Organization, key: str, change: Change = DEBIT) -> dict[str, Any]:
    return (
        get_connector(change.platform)
        .apply(org_id=org.id, idempotency_key=key, change=change, timeout=5)
        .result
    )


def test_same_key_applies_once_and_returns_the_first_result(workspace: Workspace) -> None:
    org = workspace.org
    before = budget(org, "meta")
    first = apply(org, "k1")
    second = apply(org, "k1")

    assert first == second and "applied_at" in first
    assert budget(org, "meta") == before - 800_000_000
    assert SandboxOperation.objects.get(idempotency_key="k1").replays == 1


def test_key_reused_for_another_change_is_refused(workspace: Workspace) -> None:
    apply(workspace.org, "k1")
    other = Change("meta", "update_budget", {"daily_budget_delta_micros": 5}, {"market": "all"})
    with pytest.raises(FatalError, match="idempotency_key_reused"):
        apply(workspace.org, "k1", other)


def test_rate_limit_fault_is_consumed_and_changes_nothing(workspace: Workspace) -> None:
    org = workspace.org
    before = budget(org, "meta")
    SandboxFault.objects.create(
        org=org, platform="meta", kind="rate_limit", remaining=1, retry_after_seconds=120
    )
    with pytest.raises(RateLimited) as caught:
        apply(org, "k1")

    assert caught.value.retry_after == 120
    assert str(caught.value) == "meta_ads_api: rate_limit_exceeded (code 429, retry_after=120s)"
    assert budget(org, "meta") == before
    assert SandboxFault.objects.get().remaining == 0
    apply(org, "k1")  # the fault is spent: the retry goes through
    assert budget(org, "meta") == before - 800_000_000


def test_ambiguous_fault_applies_but_loses_the_answer(workspace: Workspace) -> None:
    org = workspace.org
    before = budget(org, "meta")
    SandboxFault.objects.create(org=org, platform="meta", kind="ambiguous", remaining=1)
    with pytest.raises(AmbiguousOutcome):
        apply(org, "k1")
    assert budget(org, "meta") == before - 800_000_000
    apply(org, "k1")
    assert budget(org, "meta") == before - 800_000_000


def test_fault_scoped_to_a_key_prefix_spares_other_calls(workspace: Workspace) -> None:
    SandboxFault.objects.create(
        org=workspace.org, platform="meta", kind="fatal", key_prefix="dec_A"
    )
    apply(workspace.org, "dec_B:debit")
    with pytest.raises(FatalError):
        apply(workspace.org, "dec_A:debit")


def test_budget_cannot_go_below_zero(workspace: Workspace) -> None:
    huge = Change(
        "meta", "update_budget", {"daily_budget_delta_micros": -(10**13)}, {"market": "all"}
    )
    before = budget(workspace.org, "meta")
    with pytest.raises(FatalError, match="below zero"):
        apply(workspace.org, "k1", huge)
    assert budget(workspace.org, "meta") == before
    assert not SandboxOperation.objects.exists()


def test_target_matching_several_campaigns_is_refused_and_changes_nothing(
    workspace: Workspace,
) -> None:
    org = workspace.org
    SandboxCampaign.objects.create(
        org=org, platform="meta", campaign_id="meta-all-2", name="second", market="all",
        daily_budget_micros=5_000_000_000,
    )  # fmt: skip
    before = dict(SandboxCampaign.objects.filter(org=org).values_list("pk", "daily_budget_micros"))

    with pytest.raises(FatalError, match=r"ambiguous_target .*: 2 campaigns match"):
        apply(org, "k1")

    after = dict(SandboxCampaign.objects.filter(org=org).values_list("pk", "daily_budget_micros"))
    assert after == before
    assert not SandboxOperation.objects.exists()


def test_target_matching_no_campaign_is_not_found(workspace: Workspace) -> None:
    nowhere = Change("meta", "set_status", {"status": "paused"}, {"campaign_id": "meta-nowhere"})
    with pytest.raises(FatalError, match="not_found"):
        apply(workspace.org, "k1", nowhere)
    assert not SandboxOperation.objects.exists()


def test_snapshot_lists_the_scope_without_volatile_fields(workspace: Workspace) -> None:
    snapshot = get_connector("google").snapshot(org_id=workspace.org.id, target={"market": "all"})
    assert snapshot == [
        {
            "campaign_id": "google-all-markets",
            "name": "google all",
            "market": "all",
            "daily_budget_micros": 12_000_000_000,
            "status": "active",
        }
    ]


@pytest.mark.django_db(transaction=True)
def test_mutation_rows_cannot_be_changed_or_deleted(agent: Any) -> None:
    submit(agent, rebalance())
    drain()
    row = Mutation.objects.first()
    assert row is not None
    row.status = "failed"
    with pytest.raises(AppendOnlyError):
        row.save()
    with pytest.raises(AppendOnlyError):
        row.delete()
