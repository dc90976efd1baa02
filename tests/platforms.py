"""The reference platform server as real processes on free ports, and a team's own
platforms, plug-in and YAML workflows loaded as Backstop loads them at start-up."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mutations.connectors import unregister_connector
from mutations.platformserver.process import ServerProcess, free_ports
from runs.workflows import registry
from runs.workflows.extensions import load_platforms, load_plugin, load_yaml_workflows
from tests.processes import ROOT

EXAMPLES = ROOT / "docs" / "examples"
DEMO_WORKFLOWS = ROOT / "controlplane" / "demo_data" / "workflows"
PLUGIN = "acme_backstop"
SECRETS = {"IAM_TOKEN": "test-iam-token", "BILLING_SIGNING_KEY": "test-billing-signing-key"}


def platforms_yaml(ports: dict[str, int]) -> str:
    return f"""platforms:
  iam:
    kind: http
    base_url: http://127.0.0.1:{ports["iam"]}
    bearer_token_env: IAM_TOKEN
    timeout_seconds: 2
    sandbox: true
  ticketing:
    kind: http
    base_url: http://127.0.0.1:{ports["ticketing"]}
    timeout_seconds: 2
    sandbox: true
  billing:
    kind: http
    base_url: http://127.0.0.1:{ports["billing"]}
    signing_secret_env: BILLING_SIGNING_KEY
    timeout_seconds: 2
    requests_per_second: 50
    sandbox: true
"""


class Platforms:
    """Three reference platforms (iam, ticketing, billing) served by one real process."""

    def __init__(self, directory: Path) -> None:
        self.ports = dict(zip(("iam", "ticketing", "billing"), free_ports(3), strict=True))
        self.file = directory / "platforms.yaml"
        self.file.write_text(platforms_yaml(self.ports))
        self.env = {
            **SECRETS,
            "BACKSTOP_PLATFORMS_FILE": str(self.file),
            "BACKSTOP_WORKFLOWS_DIR": str(DEMO_WORKFLOWS),
            "BACKSTOP_PLUGINS": PLUGIN,
            "PYTHONPATH": os.pathsep.join([str(EXAMPLES), os.environ.get("PYTHONPATH", "")]),
        }
        self.server = ServerProcess(
            [sys.executable, "manage.py", "platformserver"],
            ports=self.ports.values(),
            cwd=ROOT,
            env={**os.environ, **self.env, "BACKSTOP_PLUGINS": "", "BACKSTOP_WORKFLOWS_DIR": ""},
            log=directory / "platformserver.log",
        )

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def control(self, name: str, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(method, self.url(name) + path, json=body, timeout=5)
        response.raise_for_status()
        return response.json() if response.content else None

    def seed(self, name: str, target: dict[str, Any], state: dict[str, Any]) -> None:
        self.control(
            name, "POST", "/_control/seed", {"objects": [{"target": target, "state": state}]}
        )

    def fault(self, name: str, **fault: Any) -> None:
        self.control(name, "POST", "/_control/faults", fault)

    def state(self, name: str) -> list[dict[str, Any]]:
        return list(self.control(name, "GET", "/_control/state")["objects"])

    def requests(self, name: str) -> list[dict[str, Any]]:
        return list(self.control(name, "GET", "/_control/requests")["requests"])

    def operations(self, name: str) -> list[dict[str, Any]]:
        return list(self.control(name, "GET", "/_control/operations")["operations"])

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def platforms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Platforms]:
    """Serve the three platforms and load them, the plug-in and the YAML workflows into this
    process too (intake checks decisions against the registered workflows)."""
    servers = Platforms(tmp_path)
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(EXAMPLES))
    before = set(registry.registered())
    loaded = load_platforms(servers.file)
    sys.modules.pop(PLUGIN, None)
    try:
        load_plugin(PLUGIN)
        load_yaml_workflows(DEMO_WORKFLOWS)
        yield servers
    finally:
        servers.stop()
        for workflow_id, version in set(registry.registered()) - before:
            registry.unregister(workflow_id, version)
        for name in [*loaded, "acme_audit"]:
            unregister_connector(name)
        sys.modules.pop(PLUGIN, None)
