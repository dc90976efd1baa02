"""backstop_client without a server: records built from the seed's JSON documents, errors
from odd answers, and wait's polling, over httpx's mock transport."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from backstop_client import (
    AsyncClient,
    BackstopError,
    Client,
    Decision,
    Mutation,
    RateLimited,
    Run,
)
from backstop_client.errors import error_for, retry_after
from tests.aio import run_async
from tests.conftest import load_fixture

URL = "http://backstop.test"


def decision_body(status: str | None, *, outcome: str = "allow") -> dict[str, Any]:
    """Return a DecisionDetail body: the seed's decision, its run in ``status`` (no run for
    None) and the seed's Mutation Log."""
    run = {**load_fixture("seed_workflow_run.json"), "before_state_hash": "h_0123456789ab"}
    run.update(status=status, after_state_hash="h_0123456789ab" if status else None)
    return {
        **load_fixture("seed_decision.json"),
        "requested_by": "agent:decision-runtime-cron",
        "received_at": "2026-04-22T18:12:04Z",
        "policy_evaluation": {
            "policy_version": "budget_policy_v1",
            "outcome": outcome,
            "matched_rule_ids": ["allow-market-rebalance"],
            "deciding_rule_ids": ["allow-market-rebalance"],
        },
        "run": run if status else None,
        "mutations": load_fixture("seed_mutation_log.json")["entries"],
        "events": [],
        "a_field_of_a_later_api": True,
    }


def test_seed_documents_become_records() -> None:
    decision = Decision.from_json(decision_body("compensated"))
    assert decision.status == "compensated" and decision.terminal
    assert decision.net_change == "zero"
    assert decision.run is not None and decision.run_id == decision.run.run_id
    assert decision.received_at == datetime(2026, 4, 22, 18, 12, 4, tzinfo=UTC)
    debit, credit, undo = decision.mutations
    assert undo.compensates_mutation_id == debit.mutation_id
    assert credit.result is None and credit.compensates_mutation_id is None
    assert decision.raw["a_field_of_a_later_api"] is True
    run = Run.from_json(load_fixture("seed_workflow_run.json"))
    assert run.terminal and run.finished_at is None and not run.awaiting_approval
    entry = load_fixture("seed_mutation_log.json")["entries"][0]
    assert Mutation.from_json(entry).payload == {"daily_budget_delta_micros": -800000000}


@pytest.mark.parametrize(
    ("status", "outcome", "expected", "terminal", "net_change"),
    [
        (None, "deny", "denied", True, "none"),
        (None, "allow", "received", True, "none"),
        ("awaiting_approval", "require_human", "awaiting_approval", False, "pending"),
        ("completed", "allow", "completed", True, "applied"),
        ("rejected", "require_human", "rejected", True, "none"),
    ],
)
def test_status_and_net_change_read_as_the_mcp_tools_say(
    status: str | None, outcome: str, expected: str, terminal: bool, net_change: str
) -> None:
    decision = Decision.from_json(decision_body(status, outcome=outcome))
    assert (decision.status, decision.terminal, decision.net_change) == (
        expected,
        terminal,
        net_change,
    )


def test_an_answer_outside_the_error_shape_is_still_an_error() -> None:
    error = error_for(httpx.Response(502, text="<html>Bad gateway</html>"))
    assert type(error) is BackstopError and error.status == 502
    assert "Bad Gateway" in error.message and "Bad gateway" in error.message


def test_retry_after_reads_seconds_and_dates() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert retry_after("7") == 7.0
    assert 25 < (retry_after(later) or 0) <= 30
    assert retry_after(None) is None and retry_after("soon") is None


def answers(*responses: httpx.Response) -> tuple[list[httpx.Request], Any]:
    """Return the requests seen and a handler answering with ``responses`` in turn, the
    last one again once they run out."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return responses[min(len(seen), len(responses)) - 1]

    return seen, handle


def limited() -> httpx.Response:
    body = {"error": {"code": "throttled", "message": "Request was throttled.", "fields": {}}}
    return httpx.Response(429, json=body, headers={"Retry-After": "0.05"})


def test_wait_waits_out_a_short_rate_limit_and_stops_at_terminal() -> None:
    seen, handle = answers(
        limited(),
        httpx.Response(200, json=decision_body("running")),
        httpx.Response(200, json=decision_body("compensated")),
    )
    with Client(URL, "bst_x_y", transport=httpx.MockTransport(handle)) as backstop:
        done = backstop.wait("dec_01J1B7K9C8N3RXQK9VPYZW2QF4", timeout=5, poll=0.01)
    assert done.status == "compensated" and len(seen) == 3
    assert seen[0].headers["Authorization"] == "Bearer bst_x_y"
    assert seen[0].url.path == "/api/v1/decisions/dec_01J1B7K9C8N3RXQK9VPYZW2QF4/"


def test_async_wait_returns_the_latest_answer_at_its_timeout() -> None:
    seen, handle = answers(httpx.Response(200, json=decision_body("awaiting_approval")))

    async def scenario() -> Decision:
        transport = httpx.MockTransport(handle)
        async with AsyncClient(URL, "bst_x_y", transport=transport) as backstop:
            return await backstop.wait("dec_01J1B7K9C8N3RXQK9VPYZW2QF4", timeout=0.2, poll=0.05)

    held = run_async(scenario())
    assert held.awaiting_approval and not held.terminal
    assert 3 <= len(seen) <= 6


def test_a_rate_limit_without_retry_after_is_raised_by_wait() -> None:
    _, handle = answers(httpx.Response(429, json={"error": {"code": "throttled", "message": ""}}))
    with (
        Client(URL, "bst_x_y", transport=httpx.MockTransport(handle)) as backstop,
        pytest.raises(RateLimited) as raised,
    ):
        backstop.wait("dec_01J1B7K9C8N3RXQK9VPYZW2QF4", timeout=5)
    assert raised.value.retry_after is None


@pytest.mark.parametrize(
    ("url", "token", "problem"),
    [("127.0.0.1:8000", "bst_x_y", "url"), (URL, " ", "token")],
)
def test_arguments_are_checked_up_front(url: str, token: str, problem: str) -> None:
    with pytest.raises(ValueError, match=f"^{problem}: "):
        Client(url, token)


def test_wait_refuses_a_poll_of_zero() -> None:
    with Client(URL, "bst_x_y") as backstop, pytest.raises(ValueError, match=r"^poll: "):
        backstop.wait("dec_01J1B7K9C8N3RXQK9VPYZW2QF4", poll=0)
