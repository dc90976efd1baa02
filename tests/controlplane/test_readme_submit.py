"""The README's submit command, run as written against a live server, creates a decision
each time it is run (the demo file's fixed id would return the stored decision instead)."""

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from controlplane.access.tokens import create_token
from controlplane.models import Decision, ServiceAccount

README = Path(__file__).resolve().parents[2] / "README.md"


def documented_submit() -> str:
    """Return the README's shell command that posts a decision, continuation lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    [block] = [b for b in blocks if "curl -X POST" in b and "/api/v1/decisions/" in b]
    return block.replace("\\\n", " ").strip()


@pytest.mark.skipif(not (shutil.which("jq") and shutil.which("curl")), reason="needs jq and curl")
def test_documented_command_creates_a_new_decision_each_time(
    transactional_db: None, agent: ServiceAccount, live_server: Any
) -> None:
    _, secret = create_token(service_account=agent, created_by="user:boss")
    command = documented_submit()
    assert "http://127.0.0.1:8000/" in command and "bst_..." in command
    command = command.replace("http://127.0.0.1:8000/", f"{live_server.url}/").replace(
        "bst_...", secret
    )
    # Run where the README says to: from the repository's root.
    root = README.parent
    answers = [
        json.loads(
            subprocess.run(
                ["sh", "-c", command], cwd=root, capture_output=True, text=True, check=True
            ).stdout
        )
        for _ in range(2)
    ]

    first, second = answers
    assert first["id"] != second["id"]
    sent = json.loads((root / "controlplane/demo_data/02_completed_rebalance.json").read_text())
    for answer in answers:
        assert answer["summary"] == sent["summary"]
        assert answer["requested_by"] == "agent:decision-runtime-cron"
    assert Decision.objects.filter(summary=sent["summary"]).count() == 2
