"""The Mutation Log's hash chain: appended in order, and any tampering is named."""

import json
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from django.core.management.base import CommandError
from django.db import connection

from controlplane.models import ServiceAccount
from mutations import chain
from mutations.models import LogHead, Mutation
from tests.conftest import command, drain, rebalance, submit

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def log(agent: ServiceAccount) -> list[Mutation]:
    for _ in range(3):
        submit(agent, rebalance())
    drain()
    return list(Mutation.objects.filter(org=agent.org).order_by("sequence"))


@pytest.fixture
def by_hand() -> Iterator[None]:
    """What someone with database access could do: switch the triggers off and edit rows."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE mutations_mutation DISABLE TRIGGER USER")
    yield
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ALTER TABLE mutations_mutation ENABLE TRIGGER USER")


def raw(sql: str, *params: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def remove(*mutation_ids: str) -> None:
    """Delete rows as a tamperer would, unhooking what points at them first."""
    for mutation_id in mutation_ids:
        raw("UPDATE runs_stepexecution SET mutation_id = NULL WHERE mutation_id = %s", mutation_id)
        raw(
            "UPDATE runs_stepexecution SET compensates_id = NULL WHERE compensates_id = %s",
            mutation_id,
        )
        raw(
            "UPDATE mutations_mutation SET compensates_id = NULL WHERE compensates_id = %s",
            mutation_id,
        )
        raw("DELETE FROM mutations_mutation WHERE mutation_id = %s", mutation_id)


def test_entries_form_one_chain_per_org(log: list[Mutation]) -> None:
    assert [m.sequence for m in log] == list(range(1, 7))
    assert log[0].prev_hash == chain.GENESIS
    assert all(later.prev_hash == earlier.entry_hash for earlier, later in pairwise(log))
    result = chain.verify(log[0].org_id)
    assert (result.ok, result.checked) == (True, 6)
    assert LogHead.objects.get(org_id=log[0].org_id).hash == log[-1].entry_hash


def test_changed_row_is_named(log: list[Mutation], by_hand: None) -> None:
    raw(
        "UPDATE mutations_mutation SET payload = %s WHERE mutation_id = %s",
        json.dumps({"daily_budget_delta_micros": -1}),
        log[2].mutation_id,
    )
    result = chain.verify(log[0].org_id)
    assert (result.broken_at, result.mutation_id) == (3, log[2].mutation_id)
    assert "content was changed" in result.reason
    with pytest.raises(CommandError, match="broken Mutation Log"):
        command("verifylog")


def test_deleted_row_is_named(log: list[Mutation], by_hand: None) -> None:
    remove(log[3].mutation_id)
    result = chain.verify(log[0].org_id)
    assert result.broken_at == 4 and "missing" in result.reason


def test_cut_tail_is_caught_by_a_checkpoint(
    log: list[Mutation], by_hand: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKSTOP_CHECKPOINT_KEY", "a key kept apart from the database")
    saved = tmp_path / "checkpoint.json"
    org_id = log[0].org_id
    assert "6 entries, the chain verifies" in command(
        "verifylog", org=org_id, checkpoint_out=str(saved)
    )
    assert "matches the checkpoint at entry 6" in command("verifylog", checkpoint=str(saved))

    remove(*(m.mutation_id for m in log[4:]))
    assert chain.verify(org_id).ok  # what is left still links up...
    with pytest.raises(
        CommandError, match="ends at entry 4 but the checkpoint vouches for entry 6"
    ):
        command("verifylog", checkpoint=str(saved))  # ...but the checkpoint knows better


def test_forged_checkpoint_is_refused(
    log: list[Mutation], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BACKSTOP_CHECKPOINT_KEY", "the real key")
    point = chain.make_checkpoint(log[0].org_id)
    monkeypatch.setenv("BACKSTOP_CHECKPOINT_KEY", "a guessed key")
    assert "signature is not valid" in chain.verify_checkpoint(point).reason


def test_dashboard_shows_the_chain_status(
    log: list[Mutation], by_hand: None, client: Any, member: Any
) -> None:
    from controlplane.models import Role

    client.force_login(member("viewer", Role.VIEWER))
    chain.record_verification(chain.verify(log[0].org_id))
    assert "verified up to entry 6" in client.get("/decisions/").content.decode()
    raw(
        "UPDATE mutations_mutation SET status = 'failed' WHERE mutation_id = %s", log[0].mutation_id
    )
    chain.record_verification(chain.verify(log[0].org_id))
    page = client.get("/decisions/").content.decode()
    assert f"BROKEN — entry 1 ({log[0].mutation_id})" in page
