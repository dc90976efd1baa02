"""Real `runworkflows` processes on the test database, for tests that need them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from mutations.platformserver.process import ServerProcess, free_ports

ROOT = Path(__file__).resolve().parents[1]


def database_url() -> str:
    """Return a DATABASE_URL for the database this test runs on (the test database)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


class Runners:
    """Start and kill runner processes; each one stops with the test that started it."""

    def __init__(self) -> None:
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, crash_at: str = "", **env: str) -> subprocess.Popen[bytes]:
        environment = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "BACKSTOP_LEASE_SECONDS": "1",
            "BACKSTOP_RETRY_DELAY_SCALE": "0",
            "BACKSTOP_RUNNER_POLL_SECONDS": "0.05",
            "BACKSTOP_TEST_CRASH_AT": crash_at,
            "RUNNER_LOG_LEVEL": "WARNING",
            **env,
        }
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runworkflows", *args],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()


@pytest.fixture
def runners() -> Iterator[Runners]:
    pool = Runners()
    yield pool
    pool.stop_all()


def stderr_of(process: subprocess.Popen[bytes]) -> Any:
    return process.stderr.read().decode() if process.stderr else ""


UVICORN = [sys.executable, "-m", "uvicorn", "controlplane.asgi:application"]


def server_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Return the environment of a server process on the test database."""
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "BACKSTOP_PUBLIC_URL": "http://backstop.test",
        **(extra or {}),
    }


class WebServer:
    """The ASGI web server (dashboard, API and /mcp/) as a real process."""

    def __init__(self, directory: Path, env: dict[str, str] | None = None) -> None:
        (self.port,) = free_ports(1)
        self.process = ServerProcess(
            [*UVICORN, "--port", str(self.port), "--log-level", "warning"],
            ports=[self.port],
            cwd=ROOT,
            env=server_env({"ALLOWED_HOSTS": "127.0.0.1,localhost", **(env or {})}),
            log=directory / "web.log",
        )
        self.url = f"http://127.0.0.1:{self.port}"


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebServer]:
    server = WebServer(tmp_path)
    yield server
    server.process.stop()
