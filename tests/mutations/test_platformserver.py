"""The reference platform server as a real process: the contract over real sockets."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-platform-token"
SECRET = "test-platform-signing-secret"
REQUEST_ID = re.compile(r"^req_[0-9a-f]{24}$")
GROUP = {"group": "admins"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A ``manage.py platformserver`` process; its log goes to a file (a full pipe would
    block it)."""

    def __init__(self, directory: Path, *args: str, **env: str) -> None:
        self.log = directory / f"platformserver-{free_port()}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "platformserver", *args],
                cwd=ROOT,
                env={**os.environ, "BACKSTOP_PLATFORMS_FILE": "", "BACKSTOP_PLUGINS": "", **env},
                stdout=subprocess.PIPE,
                stderr=log,
            )

    def wait_until_listening(self, port: int) -> None:
        deadline = time.monotonic() + 10
        while True:
            assert self.process.poll() is None, f"platformserver exited: {self.log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                assert time.monotonic() < deadline, f"port {port} never opened"
                time.sleep(0.05)

    def stop(self) -> int:
        """Send SIGTERM, as an operator's Ctrl-C or a supervisor would; return the exit code."""
        self.process.terminate()
        return self.wait()

    def wait(self) -> int:
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()


class Platform:
    """One served platform, talked to over HTTP."""

    def __init__(self, url: str) -> None:
        self.url = url

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, f"{self.url}/_control/{path}", json=body, timeout=5)
        assert response.is_success, response.text
        return response.json()

    def seed(self, target: dict[str, Any], state: dict[str, Any]) -> None:
        self.control("POST", "seed", {"objects": [{"target": target, "state": state}]})

    def state(self) -> list[dict[str, Any]]:
        return list(self.control("GET", "state")["objects"])

    def requests(self) -> list[dict[str, Any]]:
        return list(self.control("GET", "requests")["requests"])

    def operations(self) -> list[dict[str, Any]]:
        return list(self.control("GET", "operations")["operations"])

    def fault(self, **fault: Any) -> dict[str, Any]:
        return dict(self.control("POST", "faults", fault))

    def mutate(
        self,
        key: str | None,
        mutation_type: str,
        payload: Any,
        target: Any = GROUP,
        timeout: float = 5,
        **headers: str,
    ) -> httpx.Response:
        body = {
            "mutation_type": mutation_type,
            "target": target,
            "payload": payload,
            "decision_id": "dec_1",
            "run_id": "wf_1",
            "step_id": "step",
            "kind": "forward",
        }
        if key is not None:
            headers["Idempotency-Key"] = key
        return httpx.post(f"{self.url}/v1/mutations", json=body, headers=headers, timeout=timeout)


@pytest.fixture(scope="module")
def plain_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Platform]]:
    """Two unauthenticated platforms served by one process."""
    ports = [free_port(), free_port()]
    server = Server(
        tmp_path_factory.mktemp("plain"), "--port", str(ports[0]), "--port", str(ports[1])
    )
    for port in ports:
        server.wait_until_listening(port)
    yield [Platform(f"http://127.0.0.1:{port}") for port in ports]
    assert server.stop() == 0


@pytest.fixture
def platform(plain_process: list[Platform]) -> Platform:
    plain_process[0].control("POST", "reset")
    return plain_process[0]


@pytest.fixture(scope="module")
def secured_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, Path]]:
    """A platform that requires a bearer token and a signature; yields it and its log."""
    port = free_port()
    server = Server(
        tmp_path_factory.mktemp("secured"),
        *("--port", str(port), "--name", "iam"),
        *("--token-env", "PS_TOKEN", "--signing-secret-env", "PS_SECRET"),
        PS_TOKEN=TOKEN,
        PS_SECRET=SECRET,
    )
    server.wait_until_listening(port)
    yield Platform(f"http://127.0.0.1:{port}"), server.log
    assert server.stop() == 0


@pytest.fixture
def secured(secured_process: tuple[Platform, Path]) -> Platform:
    secured_process[0].control("POST", "reset")
    return secured_process[0]


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


# ---- idempotency -------------------------------------------------------------------------


def test_replay_returns_the_first_answer_and_applies_once(platform: Platform) -> None:
    platform.seed(GROUP, {"members": []})

    first = platform.mutate("run-1:add", "add", {"members": "ana"})
    again = platform.mutate("run-1:add", "add", {"members": "ana"})

    assert first.status_code == again.status_code == 200
    assert first.json()["object"] == {"members": ["ana"]}
    assert first.json()["operation_id"].startswith("op_")
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    ids = [first.headers["X-Request-Id"], again.headers["X-Request-Id"]]
    assert all(REQUEST_ID.match(i) for i in ids) and ids[0] != ids[1]
    assert platform.state() == [{"target": GROUP, "state": {"members": ["ana"]}}]
    assert platform.operations() == [
        {"idempotency_key": "run-1:add", "status": 200, "applied": True, "replays": 1}
    ]


def test_key_reused_for_another_body_is_refused_and_changes_nothing(platform: Platform) -> None:
    platform.seed(GROUP, {"members": []})
    platform.mutate("run-1:add", "add", {"members": "ana"})

    reused = platform.mutate("run-1:add", "add", {"members": "bob"})

    assert reused.status_code == 409
    assert error_code(reused) == "idempotency_key_reused"
    assert platform.state() == [{"target": GROUP, "state": {"members": ["ana"]}}]


def test_a_mutation_without_an_idempotency_key_is_refused(platform: Platform) -> None:
    platform.seed(GROUP, {"members": []})

    response = platform.mutate(None, "add", {"members": "ana"})

    assert (response.status_code, error_code(response)) == (400, "idempotency_key_required")
    assert platform.state() == [{"target": GROUP, "state": {"members": []}}]


def test_a_refusal_is_kept_under_its_key_and_replayed(platform: Platform) -> None:
    platform.seed(GROUP, {"members": []})
    refused = platform.mutate("run-1:remove", "remove", {"members": "ana"})
    platform.seed(GROUP, {"members": ["ana"]})

    replayed = platform.mutate("run-1:remove", "remove", {"members": "ana"})

    assert refused.status_code == replayed.status_code == 422
    assert replayed.json() == refused.json()
    assert platform.state() == [{"target": GROUP, "state": {"members": ["ana"]}}]
    [operation] = platform.operations()
    assert (operation["status"], operation["applied"], operation["replays"]) == (422, False, 1)


# ---- the record store --------------------------------------------------------------------

START = {"members": ["ana"], "seats": 2, "owner": "it"}
MUTATIONS = [
    # mutation type, payload, (status, error code), the object after (None: absent)
    ("set", {"owner": "sec", "tier": 1}, (200, None), {**START, "owner": "sec", "tier": 1}),
    ("add", {"members": "bob"}, (200, None), {**START, "members": ["ana", "bob"]}),
    ("add", {"admins": "bob"}, (200, None), {**START, "admins": ["bob"]}),
    ("add", {"members": "ana"}, (422, "already_present"), START),
    ("remove", {"members": "ana"}, (200, None), {**START, "members": []}),
    ("remove", {"members": "bob"}, (422, "not_present"), START),
    ("increment", {"seats": -2, "spares": 1}, (200, None), {**START, "seats": 0, "spares": 1}),
    ("increment", {"spares": 1, "seats": -3}, (422, "would_go_negative"), START),
    ("increment", {"seats": "one"}, (400, "invalid_payload"), START),
    ("delete", {}, (200, None), None),
    ("create", {"members": []}, (422, "already_exists"), START),
    ("rename", {}, (400, "unsupported_operation"), START),
    ("set", ["owner"], (400, "invalid_payload"), START),
]


@pytest.mark.parametrize(("mutation_type", "payload", "answer", "after"), MUTATIONS)
def test_each_mutation_type_applies_or_refuses_without_a_trace(
    platform: Platform,
    mutation_type: str,
    payload: Any,
    answer: tuple[int, str | None],
    after: dict[str, Any] | None,
) -> None:
    platform.seed(GROUP, START)

    response = platform.mutate("k", mutation_type, payload)

    assert response.status_code == answer[0], response.text
    if answer[1] is None:
        assert response.json()["applied"] is True
        assert response.json()["object"] == after
    else:
        assert error_code(response) == answer[1]
    assert platform.state() == ([] if after is None else [{"target": GROUP, "state": after}])


def test_create_makes_the_object_and_changes_to_an_absent_object_are_not_found(
    platform: Platform,
) -> None:
    for mutation_type in ("set", "add", "remove", "increment", "delete"):
        response = platform.mutate(f"k-{mutation_type}", mutation_type, {"seats": 1})
        assert (response.status_code, error_code(response)) == (404, "not_found")

    created = platform.mutate("k-create", "create", {"seats": 1}, target={"ticket": "T-1"})

    assert created.json()["object"] == {"seats": 1}
    assert platform.state() == [{"target": {"ticket": "T-1"}, "state": {"seats": 1}}]


def test_snapshot_returns_each_target_in_order(platform: Platform) -> None:
    platform.seed({"group": "b"}, {"members": ["bob"]})
    platform.seed({"group": "a", "env": "prod"}, {"members": ["ana"]})
    targets = [{"env": "prod", "group": "a"}, {"group": "missing"}, {"group": "b"}]

    response = httpx.post(f"{platform.url}/v1/snapshot", json={"targets": targets})

    assert response.status_code == 200
    assert response.json() == {"states": [{"members": ["ana"]}, None, {"members": ["bob"]}]}


def test_records_routes_create_read_and_delete_with_idempotency(platform: Platform) -> None:
    url = f"{platform.url}/v1/records/ops%20team"
    put = httpx.put(url, json={"size": 3}, headers={"Idempotency-Key": "put-1"})
    replayed = httpx.put(url, json={"size": 3}, headers={"Idempotency-Key": "put-1"})
    reused = httpx.put(url, json={"size": 4}, headers={"Idempotency-Key": "put-1"})

    assert put.status_code == replayed.status_code == 200
    assert put.json()["object"] == {"size": 3} and replayed.json() == put.json()
    assert reused.status_code == 409
    assert httpx.get(url).json() == {"size": 3}
    assert platform.state() == [{"target": {"record": "ops team"}, "state": {"size": 3}}]

    deleted = httpx.delete(url, headers={"Idempotency-Key": "delete-1"})
    again = httpx.delete(url, headers={"Idempotency-Key": "delete-1"})

    assert deleted.json()["object"] is None and again.json() == deleted.json()
    assert httpx.get(url).status_code == 404
    assert httpx.delete(url).status_code == 404
    assert platform.state() == []


def test_two_ports_serve_two_platforms_with_their_own_state(
    plain_process: list[Platform],
) -> None:
    first, second = plain_process
    for served in plain_process:
        served.control("POST", "reset")
    first.seed(GROUP, {"members": []})

    assert second.state() == []
    assert second.mutate("k", "add", {"members": "ana"}).status_code == 404


# ---- authentication ----------------------------------------------------------------------


def signed(body: bytes, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    stamp = str(int(time.time() if at is None else at))
    digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Backstop-Timestamp": stamp, "X-Backstop-Signature": f"v1={digest}"}


def test_token_and_signature_are_required_when_configured(
    secured: Platform, secured_process: tuple[Platform, Path]
) -> None:
    secured.seed(GROUP, {"members": []})
    body = json.dumps({"mutation_type": "add", "target": GROUP, "payload": {"members": "ana"}})
    raw = body.encode()
    bearer = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "k"}
    attempts = [
        ({"Idempotency-Key": "k", **signed(raw)}, (401, "unauthorized")),
        ({"Authorization": "Bearer wrong", **signed(raw)}, (401, "unauthorized")),
        (bearer, (401, "bad_signature")),
        ({**bearer, **signed(raw, secret="another")}, (401, "bad_signature")),
        ({**bearer, **signed(raw + b" ")}, (401, "bad_signature")),
        ({**bearer, **signed(raw, at=time.time() - 301)}, (401, "stale_timestamp")),
        ({**bearer, **signed(raw)}, (200, None)),
    ]
    for headers, (status, code) in attempts:
        response = httpx.post(f"{secured.url}/v1/mutations", content=raw, headers=headers)
        assert response.status_code == status, (headers, response.text)
        assert code is None or error_code(response) == code

    assert secured.state() == [{"target": GROUP, "state": {"members": ["ana"]}}]
    logged = [(r["authorized"], r["signature_valid"], r["status"]) for r in secured.requests()]
    assert logged == [
        (False, True, 401),
        (False, True, 401),
        (True, False, 401),
        (True, False, 401),
        (True, False, 401),
        (True, False, 401),
        (True, True, 200),
    ]
    log = secured_process[1].read_text()
    assert "iam POST /v1/mutations 200 req_" in log
    assert TOKEN not in log and SECRET not in log and "v1=" not in log


# ---- planned faults ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ({"kind": "rate_limit", "retry_after": 2}, 429, "rate_limited"),
        ({"kind": "transient"}, 503, "unavailable"),
        ({"kind": "fatal", "status": 403}, 403, "injected_failure"),
    ],
)
def test_a_refusing_fault_is_not_kept_and_the_retry_applies(
    platform: Platform, fault: dict[str, Any], status: int, code: str
) -> None:
    platform.seed(GROUP, {"members": []})
    planned = platform.fault(key_prefix="run-1:", mutation_type="add", **fault)

    refused = platform.mutate("run-1:add", "add", {"members": "ana"})
    retried = platform.mutate("run-1:add", "add", {"members": "ana"})

    assert planned["id"] and planned["count"] == 1
    assert (refused.status_code, error_code(refused)) == (status, code)
    if fault["kind"] == "rate_limit":
        assert refused.headers["Retry-After"] == "2"
    assert retried.status_code == 200 and "Idempotent-Replayed" not in retried.headers
    assert platform.state() == [{"target": GROUP, "state": {"members": ["ana"]}}]
    outcomes = [(r["status"], r["outcome"]) for r in platform.requests()]
    assert outcomes == [(status, f"fault:{fault['kind']}"), (200, "applied")]
    assert [o["replays"] for o in platform.operations()] == [0]
    assert platform.control("GET", "faults")["faults"][0]["count"] == 0


def test_a_fault_hits_only_matching_calls_and_null_count_hits_every_one(
    platform: Platform,
) -> None:
    platform.seed(GROUP, {"members": [], "seats": 5})
    platform.fault(kind="transient", key_prefix="run-2:", count=None)
    platform.fault(kind="transient", mutation_type="increment")

    assert platform.mutate("run-1:add", "add", {"members": "ana"}).status_code == 200
    assert platform.mutate("run-2:add", "add", {"members": "bob"}).status_code == 503
    assert platform.mutate("run-2:add", "add", {"members": "bob"}).status_code == 503
    assert platform.mutate("run-1:seat", "increment", {"seats": 1}).status_code == 503
    assert platform.mutate("run-1:seat", "increment", {"seats": 1}).status_code == 200

    assert platform.control("DELETE", "faults") == {"cleared": 2}
    assert platform.mutate("run-2:add", "add", {"members": "bob"}).status_code == 200


def test_ambiguous_fault_applies_drops_the_connection_and_the_retry_replays(
    platform: Platform,
) -> None:
    platform.seed(GROUP, {"seats": 3})
    platform.fault(kind="ambiguous", key_prefix="run-1:")

    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        platform.mutate("run-1:seat", "increment", {"seats": -1})
    assert platform.state() == [{"target": GROUP, "state": {"seats": 2}}]
    retried = platform.mutate("run-1:seat", "increment", {"seats": -1})

    assert retried.status_code == 200 and retried.headers["Idempotent-Replayed"] == "true"
    assert retried.json()["object"] == {"seats": 2}
    assert platform.state() == [{"target": GROUP, "state": {"seats": 2}}]
    outcomes = [(r["status"], r["outcome"]) for r in platform.requests()]
    assert outcomes == [(None, "fault:ambiguous"), (200, "replayed")]
    assert platform.operations() == [
        {"idempotency_key": "run-1:seat", "status": 200, "applied": True, "replays": 1}
    ]


def test_timeout_fault_outlives_the_client_and_the_retry_applies_once(
    platform: Platform,
) -> None:
    platform.seed(GROUP, {"seats": 3})
    platform.fault(kind="timeout", delay=1.0)

    with pytest.raises(httpx.ReadTimeout):
        platform.mutate("run-1:seat", "increment", {"seats": -1}, timeout=0.3)
    retried = platform.mutate("run-1:seat", "increment", {"seats": -1})
    assert retried.status_code == 200 and retried.json()["object"] == {"seats": 2}

    deadline = time.monotonic() + 5
    while platform.requests()[0]["status"] is None:  # the first call wakes after its delay
        assert time.monotonic() < deadline, platform.requests()
        time.sleep(0.05)
    assert [(r["status"], r["outcome"]) for r in platform.requests()] == [
        (200, "fault:timeout"),
        (200, "applied"),
    ]
    assert platform.state() == [{"target": GROUP, "state": {"seats": 2}}]
    assert [(o["applied"], o["replays"]) for o in platform.operations()] == [(True, 0)]


def test_timeout_fault_applies_after_its_delay_and_the_later_retry_replays(
    platform: Platform,
) -> None:
    platform.seed(GROUP, {"seats": 3})
    platform.fault(kind="timeout", delay=1.0, key_prefix="run-1:")
    started = time.monotonic()

    with pytest.raises(httpx.ReadTimeout):
        platform.mutate("run-1:seat", "increment", {"seats": -1}, timeout=0.3)
    time.sleep(max(0.0, started + 1.2 - time.monotonic()))
    retried = platform.mutate("run-1:seat", "increment", {"seats": -1})

    assert retried.status_code == 200 and retried.headers["Idempotent-Replayed"] == "true"
    assert retried.json()["object"] == {"seats": 2}
    assert platform.state() == [{"target": GROUP, "state": {"seats": 2}}]
    assert [(r["status"], r["outcome"]) for r in platform.requests()] == [
        (200, "fault:timeout"),
        (200, "replayed"),
    ]
    assert [(o["applied"], o["replays"]) for o in platform.operations()] == [(True, 1)]


def test_an_invalid_fault_is_refused_naming_the_field(platform: Platform) -> None:
    response = httpx.post(f"{platform.url}/_control/faults", json={"kind": "flaky"})
    wrong = httpx.post(f"{platform.url}/_control/faults", json={"kind": "fatal", "count": 0})

    assert (response.status_code, error_code(response)) == (400, "invalid_fault")
    assert "count" in wrong.json()["error"]["message"]
    assert platform.control("GET", "faults") == {"faults": []}


# ---- the request log and the control routes ----------------------------------------------


def test_request_log_records_every_v1_request_in_order(platform: Platform) -> None:
    platform.seed(GROUP, {"members": []})
    before = time.time()
    applied = platform.mutate("run-1:add", "add", {"members": "ana"})
    read = httpx.post(f"{platform.url}/v1/snapshot", json={"targets": [GROUP]})
    missing = httpx.get(f"{platform.url}/v1/records/none")

    entries = platform.requests()

    assert [{k: v for k, v in e.items() if k != "at"} for e in entries] == [
        {
            "method": "POST",
            "path": "/v1/mutations",
            "idempotency_key": "run-1:add",
            "authorized": True,
            "signature_valid": None,
            "status": 200,
            "request_id": applied.headers["X-Request-Id"],
            "outcome": "applied",
        },
        {
            "method": "POST",
            "path": "/v1/snapshot",
            "idempotency_key": None,
            "authorized": True,
            "signature_valid": None,
            "status": 200,
            "request_id": read.headers["X-Request-Id"],
            "outcome": "read",
        },
        {
            "method": "GET",
            "path": "/v1/records/none",
            "idempotency_key": None,
            "authorized": True,
            "signature_valid": None,
            "status": 404,
            "request_id": missing.headers["X-Request-Id"],
            "outcome": "refused",
        },
    ]
    times = [e["at"] for e in entries]
    assert before <= times[0] <= times[1] <= times[2] <= time.time()


def test_reset_forgets_objects_faults_keys_and_requests(platform: Platform) -> None:
    platform.seed(GROUP, {"members": []})
    platform.mutate("run-1:add", "add", {"members": "ana"})
    platform.fault(kind="transient")

    assert platform.control("POST", "reset") == {"reset": True}

    assert platform.state() == [] and platform.requests() == [] and platform.operations() == []
    assert platform.control("GET", "faults") == {"faults": []}
    unknown = httpx.get(f"{platform.url}/nowhere")
    assert (unknown.status_code, error_code(unknown)) == (404, "unknown_route")
    assert REQUEST_ID.match(unknown.headers["X-Request-Id"])


# ---- the command -------------------------------------------------------------------------


def test_command_announces_each_platform_and_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    server = Server(tmp_path, "--port", "0", "--name", "solo")
    assert server.process.stdout is not None
    line = server.process.stdout.readline().decode()
    match = re.fullmatch(r"serving solo on (http://127\.0\.0\.1:\d+)\n", line)
    assert match, line

    assert httpx.get(f"{match[1]}/_control/state").json() == {"objects": []}
    assert server.stop() == 0


def test_command_names_a_secret_variable_that_is_not_set(tmp_path: Path) -> None:
    server = Server(tmp_path, "--port", "0", "--token-env", "PS_UNSET_TOKEN_VARIABLE")

    assert server.wait() != 0
    assert "PS_UNSET_TOKEN_VARIABLE" in server.log.read_text()
