"""The benchmark's decisions: the same mix (70% complete, 30% fail on their last step and
compensate) of a two-step rebalance, either on the built-in sandbox platforms (in the
database) or on two reference HTTP platform servers that answer after a set latency."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Protocol

import httpx

from controlplane.intake.submit import POLICY_DIR
from controlplane.models import Organization
from mutations.connectors import unregister_connector
from mutations.connectors.sandbox import open_campaigns
from mutations.models import SandboxFault
from mutations.platformserver.process import ServerProcess, free_ports
from runs.keys import FIRST_ATTEMPT, run_key, step_calls_prefix
from runs.workflows import registry
from runs.workflows.extensions import load_platforms, load_yaml_workflows

ROOT = Path(__file__).resolve().parents[2]
BUDGET = 1_000_000_000_000
FAILING_STEP = "credit_target_channel"  # both mixes' last step
SEED_BATCH = 2_000  # objects per POST /_control/seed (its body is capped at 1 MiB)
HTTP_PLATFORMS = ("ads_source", "ads_target")
HTTP_WORKFLOW = ("bench_rebalance_http", 1)

PLATFORMS_FILE = """\
# The benchmark's two platforms: reference platform servers on this machine.
platforms:
  ads_source:
    kind: http
    base_url: http://127.0.0.1:{source_port}
    timeout_seconds: {timeout}
    max_in_flight: 32  # the reference server takes that many calls at once
  ads_target:
    kind: http
    base_url: http://127.0.0.1:{target_port}
    timeout_seconds: {timeout}
    max_in_flight: 32
"""

WORKFLOW_FILE = """\
# The benchmark's rebalance over HTTP, shaped like the built-in execute_rebalance_spend:
# debit one platform, then credit the other; each undone by the inverse increment.
id: bench_rebalance_http
version: 1
decision_type: bench_rebalance
topic: ads.budget
description: Move a daily budget from one HTTP platform to another.
action:
  market: {type: string}
  amount_micros: {type: integer}
scope:
  ads_source: {campaign: "{{ action.market }}"}
  ads_target: {campaign: "{{ action.market }}"}
steps:
  - id: debit_source_channel
    platform: ads_source
    mutation_type: increment
    target: {campaign: "{{ action.market }}"}
    payload: {daily_budget_micros: "{{ -action.amount_micros }}"}
    retry: {max_attempts: 3, initial_interval: 1, retry_after_cap: 2}
    compensation:
      id: credit_source_channel
      mutation_type: increment
      target: "{{ forward.target }}"
      payload: {daily_budget_micros: "{{ action.amount_micros }}"}
  - id: credit_target_channel
    platform: ads_target
    mutation_type: increment
    target: {campaign: "{{ action.market }}"}
    payload: {daily_budget_micros: "{{ action.amount_micros }}"}
    retry: {max_attempts: 3, initial_interval: 1, retry_after_cap: 2}
    compensation:
      id: debit_target_channel
      mutation_type: increment
      target: "{{ forward.target }}"
      payload: {daily_budget_micros: "{{ -action.amount_micros }}"}
"""

HTTP_POLICY = """\
version: bench_http_policy_v1
description: The benchmark's rebalances over HTTP platforms.
default: require_human
rules:
  - id: allow-benchmark-rebalance
    when: { type: bench_rebalance, compensation_declared: true }
    decision: allow
"""


def fails(n: int) -> bool:
    """Return whether the n-th decision of the mix fails on its last step (3 in 10)."""
    return n % 10 < 3


def failing_key_prefix(decision_id: str) -> str:
    return step_calls_prefix(run_key(decision_id, FIRST_ATTEMPT), FAILING_STEP)


class Mix(Protocol):
    label: str
    policy_text: str
    runner_env: dict[str, str]

    def start_row(self) -> None:
        """Start a row afresh (the platforms' logs count one row's calls)."""

    def prepare(self, org: Organization, markets: list[str]) -> None:
        """Create the objects the decisions of these markets change."""

    def plan_failure(self, org: Organization, decision_id: str) -> None:
        """Make the decision's last step fail for good (its first step is compensated)."""

    def document(self, decision_id: str, n: int, market: str) -> dict[str, Any]:
        """Return the n-th decision of the mix."""

    def platform_calls(self) -> int | None:
        """Return the calls the platforms received since the row started (None: not over
        HTTP); read it once the runs are drained."""

    def close(self) -> None:
        """Stop what the mix started."""


def _document(decision_id: str, n: int, action: dict[str, Any], policy: str) -> dict[str, Any]:
    return {
        "id": decision_id,
        "type": action["type"],
        "priority": "medium",
        "confidence": 0.8,
        "summary": f"Benchmark rebalance {n}",
        "reasoning": "benchmark",
        "auto_executable": True,
        "action": action,
        "computed_at": "2026-04-22T18:12:04Z",
        "policy_version": policy,
    }


class SandboxMix:
    """The built-in execute_rebalance_spend on the sandbox platforms meta and google."""

    def __init__(self) -> None:
        self.label = "sandbox platforms (in the database)"
        self.policy_text = (POLICY_DIR / "budget_policy_v1.yaml").read_text()
        self.runner_env: dict[str, str] = {}

    def start_row(self) -> None:
        pass

    def prepare(self, org: Organization, markets: list[str]) -> None:
        open_campaigns(org_id=org.id, markets=markets, daily_budget_micros=BUDGET)

    def plan_failure(self, org: Organization, decision_id: str) -> None:
        SandboxFault.objects.create(
            org=org,
            platform="google",
            kind=SandboxFault.Kind.FATAL,
            key_prefix=failing_key_prefix(decision_id),
        )

    def document(self, decision_id: str, n: int, market: str) -> dict[str, Any]:
        action = {
            "type": "rebalance_spend",
            "source_channel": "meta",
            "target_channel": "google",
            "amount": 10,
            "currency": "USD",
            "cadence": "daily",
            "scope": {"market": market},
            "reason": "benchmark",
        }
        return _document(decision_id, n, action, "budget_policy_v1")

    def platform_calls(self) -> int | None:
        return None

    def close(self) -> None:
        pass


class HttpMix:
    """A YAML workflow on two reference platform servers (``manage.py platformserver
    --latency-ms``), declared in a platforms file and a workflows directory that the
    runners load from BACKSTOP_PLATFORMS_FILE and BACKSTOP_WORKFLOWS_DIR."""

    policy_text = HTTP_POLICY

    def __init__(self, *, latency_ms: float) -> None:
        self.label = f"HTTP reference platforms answering after {latency_ms:g} ms"
        self._directory = tempfile.TemporaryDirectory(prefix="backstop-bench-")
        root = Path(self._directory.name)
        self.ports = dict(zip(HTTP_PLATFORMS, free_ports(len(HTTP_PLATFORMS)), strict=True))
        platforms_file = root / "platforms.yaml"
        platforms_file.write_text(
            PLATFORMS_FILE.format(
                source_port=self.ports["ads_source"],
                target_port=self.ports["ads_target"],
                timeout=10 + round(latency_ms * 3 / 1000),
            )
        )
        workflows = root / "workflows"
        workflows.mkdir()
        (workflows / "bench_rebalance.yaml").write_text(WORKFLOW_FILE)
        self.runner_env = {
            "BACKSTOP_PLATFORMS_FILE": str(platforms_file),
            "BACKSTOP_WORKFLOWS_DIR": str(workflows),
            "BACKSTOP_PLUGINS": "",
        }
        self._server = ServerProcess(
            [sys.executable, "manage.py", "platformserver", "--latency-ms", f"{latency_ms:g}"],
            ports=self.ports.values(),
            cwd=ROOT,
            env={**os.environ, **self.runner_env, "BACKSTOP_WORKFLOWS_DIR": ""},
            log=root / "platformserver.log",
        )
        self._client = httpx.Client(timeout=30)
        self._registered: list[str] = []
        try:
            # Intake checks decisions against the registered workflows: load them here too.
            self._registered = load_platforms(platforms_file)
            load_yaml_workflows(workflows)
        except BaseException:
            self.close()
            raise

    def url(self, platform: str) -> str:
        return f"http://127.0.0.1:{self.ports[platform]}"

    def start_row(self) -> None:
        for platform in HTTP_PLATFORMS:
            self._control(platform, "/_control/reset", None)

    def prepare(self, org: Organization, markets: list[str]) -> None:
        for start in range(0, len(markets), SEED_BATCH):
            objects = [
                {"target": {"campaign": market}, "state": {"daily_budget_micros": BUDGET}}
                for market in markets[start : start + SEED_BATCH]
            ]
            for platform in HTTP_PLATFORMS:
                self._control(platform, "/_control/seed", {"objects": objects})

    def plan_failure(self, org: Organization, decision_id: str) -> None:
        fault = {"kind": "fatal", "key_prefix": failing_key_prefix(decision_id), "count": 1}
        self._control("ads_target", "/_control/faults", fault)

    def document(self, decision_id: str, n: int, market: str) -> dict[str, Any]:
        action = {"type": "bench_rebalance", "market": market, "amount_micros": 10_000_000}
        return _document(decision_id, n, action, "bench_http_policy_v1")

    def platform_calls(self) -> int:
        """Return the /v1 requests both servers logged (``GET /_control/requests``)."""
        total = 0
        for platform in HTTP_PLATFORMS:
            response = self._client.get(self.url(platform) + "/_control/requests")
            total += len(response.raise_for_status().json()["requests"])
        return total

    def close(self) -> None:
        registry.unregister(*HTTP_WORKFLOW)
        for name in self._registered:
            unregister_connector(name)
        self._client.close()
        self._server.stop()
        self._directory.cleanup()

    def _control(self, platform: str, path: str, body: Any) -> None:
        self._client.post(self.url(platform) + path, json=body).raise_for_status()
