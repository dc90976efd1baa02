"""How the HTTP connector speaks the contract and classifies what a platform answers."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from mutations.connectors import (
    AmbiguousOutcome,
    Call,
    Change,
    FatalError,
    HttpConnector,
    HttpPlatform,
    PlatformError,
    RateLimited,
    TransientError,
)

CHANGE = Change("iam", "add", {"members": "ana"}, {"group": "oncall"})
CALL = Call(decision_id="dec_1", run_id="wf_1", step_id="add", kind="forward")


def connector(handler: Any, monkeypatch: pytest.MonkeyPatch, **config: Any) -> HttpConnector:
    monkeypatch.setenv("T", "secret-token")
    monkeypatch.setenv("S", "signing-secret")
    platform = HttpPlatform(name="iam", base_url="http://iam.test", **config)
    return HttpConnector(platform, transport=httpx.MockTransport(handler))


def apply(http: HttpConnector) -> Any:
    return http.apply(org_id="org_1", idempotency_key="k:add", change=CHANGE, timeout=5, call=CALL)


def test_apply_sends_the_contract_with_key_token_and_signature(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"applied": True}, headers={"X-Request-Id": "req_1"})

    http = connector(handler, monkeypatch, bearer_token_env="T", signing_secret_env="S")
    applied = apply(http)

    [request] = seen
    assert (request.method, request.url.path) == ("POST", "/v1/mutations")
    assert json.loads(request.content) == {
        "mutation_type": "add",
        "target": {"group": "oncall"},
        "payload": {"members": "ana"},
        "decision_id": "dec_1",
        "run_id": "wf_1",
        "step_id": "add",
        "kind": "forward",
    }
    assert request.headers["Idempotency-Key"] == "k:add"
    assert request.headers["Authorization"] == "Bearer secret-token"
    stamp = request.headers["X-Backstop-Timestamp"]
    expected = hmac.new(b"signing-secret", stamp.encode() + b"." + request.content, hashlib.sha256)
    assert request.headers["X-Backstop-Signature"] == "v1=" + expected.hexdigest()
    assert applied.result == {"applied": True}
    assert applied.receipt == {"http_status": 200, "request_id": "req_1"}
    assert "secret" not in repr(http)


@pytest.mark.parametrize(
    ("response", "error", "phrase"),
    [
        (httpx.Response(503), TransientError, "(HTTP 503)"),
        (
            httpx.Response(409, json={"error": {"code": "x", "message": "other body"}}),
            FatalError,
            "idempotency key reused",
        ),
        (
            httpx.Response(404, json={"error": {"code": "not_found", "message": "no group"}}),
            FatalError,
            "not_found (HTTP 404): no group",
        ),
        (httpx.Response(422, text="plain words"), FatalError, "(HTTP 422): plain words"),
        (httpx.Response(429, headers={"Retry-After": "2"}), RateLimited, "retry_after=2s"),
    ],
)
def test_answers_map_onto_the_error_classes(
    monkeypatch: pytest.MonkeyPatch,
    response: httpx.Response,
    error: type[PlatformError],
    phrase: str,
) -> None:
    http = connector(lambda request: response, monkeypatch)
    with pytest.raises(error) as raised:
        apply(http)
    assert phrase in raised.value.message
    assert raised.value.receipt["http_status"] == response.status_code


def test_retry_after_as_an_http_date(monkeypatch: pytest.MonkeyPatch) -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    http = connector(lambda r: httpx.Response(429, headers={"Retry-After": later}), monkeypatch)
    with pytest.raises(RateLimited) as raised:
        apply(http)
    assert raised.value.retry_after is not None and 25 <= raised.value.retry_after <= 30


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (httpx.ConnectError("refused"), TransientError),
        (httpx.ReadTimeout("slow"), AmbiguousOutcome),
        (httpx.RemoteProtocolError("dropped"), AmbiguousOutcome),
    ],
)
def test_lost_answers_are_ambiguous_unsent_requests_transient(
    monkeypatch: pytest.MonkeyPatch, failure: Exception, error: type
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise failure

    with pytest.raises(error):
        apply(connector(handler, monkeypatch))


def test_a_step_request_replaces_the_contract_call(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    change = Change(
        "iam",
        "put",
        {},
        {"record": "r"},
        request={"method": "put", "path": "/r/1", "json": {"a": 1}},
    )
    applied = connector(handler, monkeypatch).apply(
        org_id="o", idempotency_key="k", change=change, timeout=1
    )
    assert (seen[0].method, seen[0].url.path, json.loads(seen[0].content)) == (
        "PUT",
        "/r/1",
        {"a": 1},
    )
    assert applied.result == {}


def test_snapshot_returns_one_state_per_target(monkeypatch: pytest.MonkeyPatch) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        targets = json.loads(request.content)["targets"]
        return httpx.Response(200, json={"states": [{"of": t} for t in targets]})

    states = connector(handler, monkeypatch).snapshot_many(org_id="o", targets=[{"a": 1}, {"b": 2}])
    assert states == [{"of": {"a": 1}}, {"of": {"b": 2}}]
