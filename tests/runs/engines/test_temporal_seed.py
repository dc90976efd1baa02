"""The proof of seed 000 on a real Temporal dev server: the same Mutation Log, run and
timeline as with the built-in engine."""

from typing import Any

import pytest
from django.test import Client

from controlplane.devtools.demo import SEED_DECISION_ID
from controlplane.models import Organization
from mutations.models import Mutation
from runs.models import WorkflowRun
from tests.conftest import command, load_fixture
from tests.temporal import drain_on_temporal

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def seed_run(client: Client, temporal: Any) -> dict[str, Any]:
    command("demo")
    drain_on_temporal()
    client.login(username="operator", password="backstop-demo")
    return {"org": Organization.objects.get(slug="demo"), "client": client}


def test_seed_decision_on_temporal_gives_the_seed_mutation_log(seed_run: dict[str, Any]) -> None:
    body = seed_run["client"].get(f"/api/v1/mutations/?decision_id={SEED_DECISION_ID}").json()
    seed = load_fixture("seed_mutation_log.json")

    assert body["count"] == 3 == len(body["entries"])
    for entry, expected in zip(body["entries"], seed["entries"], strict=True):
        assert list(entry) == list(expected)
        for field in ("decision_id", "platform", "mutation_type", "status", "actor_type"):
            assert entry[field] == expected[field], field
    debit, _, undo = body["entries"]
    assert undo["payload"]["compensates_mutation_id"] == debit["mutation_id"]
    assert (
        Mutation.objects.get(mutation_id=undo["mutation_id"]).compensates_id
        == (debit["mutation_id"])
    )
    run = WorkflowRun.objects.get(decision_id=SEED_DECISION_ID)
    assert run.engine == "temporal" and run.dispatched_at is not None
    assert run.status == "compensated"
    assert run.before_state_hash == run.after_state_hash
    assert "the chain verifies" in command("verifylog")
