"""Production settings: the deployment checklist is clean and secrets come from the env."""

import os
import subprocess
import sys

from tests.processes import ROOT

PRODUCTION = {
    "BACKSTOP_ENV": "production",
    "SECRET_KEY": "k3y-" + "x7Qp2Lm9Zr4Tb8Wc1Vn6Yd5Hs0Jf3Gk" * 2,
    "ALLOWED_HOSTS": "backstop.example.com",
}


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    # The browser tests allow the ORM under Playwright's event loop; a deployment must not.
    ignored = {*PRODUCTION, "DJANGO_ALLOW_ASYNC_UNSAFE"}
    environment = {k: v for k, v in os.environ.items() if k not in ignored} | env
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_reports_nothing_in_production() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


def test_production_refuses_to_start_without_its_secrets() -> None:
    for missing in ("SECRET_KEY", "ALLOWED_HOSTS"):
        env = {k: v for k, v in PRODUCTION.items() if k != missing}
        result = manage("check", **env)
        assert result.returncode != 0
        assert f"Set {missing} in the environment" in result.stderr
