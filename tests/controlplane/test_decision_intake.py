"""POST /api/v1/decisions/: validation, idempotency, the gate's outcome, tenancy."""

import copy
from typing import Any

import pytest
from django.test import Client

from controlplane.models import Decision, Organization, PolicyEvaluation, Role, Workspace
from mutations.models import RuntimeEvent
from runs.models import WorkflowRun
from tests.conftest import first_run_key, load_fixture, rebalance

pytestmark = pytest.mark.django_db
URL = "/api/v1/decisions/"


@pytest.fixture
def api(client: Client, member: Any) -> Client:
    client.force_login(member("ops", Role.OPERATOR))
    return client


def post(client: Client, body: Any) -> Any:
    return client.post(URL, body, content_type="application/json")


def nothing_stored() -> bool:
    return not (
        Decision.objects.exists()
        or RuntimeEvent.objects.exists()
        or WorkflowRun.objects.exists()
        or PolicyEvaluation.objects.exists()
    )


def test_seed_decision_is_received_allowed_and_queued(api: Client) -> None:
    seed = load_fixture("seed_decision.json")
    response = post(api, seed)

    assert response.status_code == 201
    body = response.json()
    assert {k: body[k] for k in seed} == seed
    assert body["requested_by"] == "user:ops"
    assert body["policy_evaluation"]["outcome"] == "allow"
    assert body["policy_evaluation"]["matched_rule_ids"] == ["allow-market-rebalance"]
    assert body["run"]["status"] == "pending"
    assert body["run"]["idempotency_key"] == first_run_key(seed)
    kinds = list(RuntimeEvent.objects.values_list("kind", flat=True))
    assert kinds == ["decision_received", "policy_evaluated"]


def test_same_id_same_payload_returns_the_stored_decision(api: Client) -> None:
    seed = load_fixture("seed_decision.json")
    first = post(api, seed).json()
    again = post(api, copy.deepcopy(seed))

    assert again.status_code == 200
    assert again.json() == first
    assert Decision.objects.count() == 1 and WorkflowRun.objects.count() == 1


def test_same_id_different_payload_conflicts(api: Client) -> None:
    seed = load_fixture("seed_decision.json")
    post(api, seed)
    changed = {**seed, "action": {**seed["action"], "amount": 900}}
    response = post(api, changed)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert Decision.objects.get().action["amount"] == 800
    assert WorkflowRun.objects.count() == 1


def test_id_is_assigned_when_the_agent_gives_none(api: Client) -> None:
    seed = load_fixture("seed_decision.json")
    del seed["id"]
    body = post(api, seed).json()
    assert body["id"].startswith("dec_") and len(body["id"]) == 30


@pytest.mark.parametrize("field", sorted(set(load_fixture("seed_decision.json")) - {"id"}))
def test_missing_field_is_named_and_nothing_is_stored(api: Client, field: str) -> None:
    seed = load_fixture("seed_decision.json")
    del seed[field]
    response = post(api, seed)

    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]
    assert nothing_stored()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("confidence", "high"),
        ("confidence", 1.5),
        ("auto_executable", "yes"),
        ("summary", 42),
        ("priority", "urgent"),
        ("computed_at", "yesterday"),
        ("id", "dec_123"),
        ("id", "mut_01J1B7K9C8N3RXQK9VPYZW2QF4"),
        ("type", "launch_rocket"),
        ("action", "shift money"),
        ("action.amount", "lots"),
        ("action.amount", -800),
        ("action.source_channel", "tiktok"),
        ("action.target_channel", "meta"),
        ("action.currency", "EUR"),
        ("action.scope", "everywhere"),
        ("action.type", "adjust_budget"),
        ("color", "red"),
    ],
)
def test_wrong_value_is_refused_naming_the_field(api: Client, path: str, value: Any) -> None:
    seed = load_fixture("seed_decision.json")
    target, _, key = path.rpartition(".")
    (seed[target] if target else seed)[key] = value
    response = post(api, seed)

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert path in error["fields"], error
    assert nothing_stored()


def test_body_that_is_not_an_object_is_refused(api: Client) -> None:
    assert post(api, [1, 2]).status_code == 400
    response = api.post(URL, "{not json", content_type="application/json")
    assert response.status_code == 400
    assert nothing_stored()


def test_denied_decision_starts_no_run(api: Client) -> None:
    response = post(api, rebalance(confidence=0.2))

    assert response.status_code == 201
    body = response.json()
    assert body["policy_evaluation"]["outcome"] == "deny"
    assert body["policy_evaluation"]["deciding_rule_ids"] == ["deny-low-confidence"]
    assert body["run"] is None
    assert not WorkflowRun.objects.exists()


def test_held_decision_waits_for_approval(api: Client) -> None:
    body = post(api, rebalance(amount=6000)).json()
    assert body["policy_evaluation"]["outcome"] == "require_human"
    assert body["run"]["status"] == "awaiting_approval"
    assert body["run"]["awaiting_approval"] is True


def test_viewer_cannot_submit(client: Client, member: Any) -> None:
    client.force_login(member("watcher", Role.VIEWER))
    response = post(client, load_fixture("seed_decision.json"))
    assert response.status_code == 403
    assert nothing_stored()


def test_anonymous_cannot_submit_or_read(client: Client, workspace: Workspace) -> None:
    assert post(client, load_fixture("seed_decision.json")).status_code == 401
    assert client.get(URL).status_code == 401
    assert nothing_stored()


def test_other_orgs_decisions_are_not_found(
    api: Client, member: Any, django_user_model: Any
) -> None:
    seed = load_fixture("seed_decision.json")
    post(api, seed)
    run_id = WorkflowRun.objects.get().run_id
    other = Organization.objects.create(name="Other", slug="other")
    Workspace.objects.create(org=other, name="Default", slug="default")
    outsider = member("outsider", Role.ADMIN, org=other)
    api.force_login(outsider)

    assert api.get(f"{URL}{seed['id']}/").status_code == 404
    assert api.get(f"/api/v1/mutations/?decision_id={seed['id']}").status_code == 404
    assert api.get(f"/api/v1/events/?decision_id={seed['id']}").status_code == 404
    assert api.get(f"/api/v1/runs/{run_id}/").status_code == 404
    assert api.get(URL).json()["entries"] == []
    # The same id from another org is a conflict, never a read of the original.
    assert post(api, seed).status_code == 409


def test_mutations_query_needs_a_decision_id(api: Client) -> None:
    response = api.get("/api/v1/mutations/")
    assert response.status_code == 400
    assert "decision_id" in response.json()["error"]["fields"]
