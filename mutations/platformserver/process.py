"""A server as a child process (the reference platform server, a Temporal dev server), for
the bench and the tests: started with the command and environment given, waited for until
every port listens, stopped."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

START_SECONDS = 20.0


def free_ports(count: int) -> list[int]:
    """Return ports free now; all bound at once, so they differ."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in sockets]
    finally:
        for s in sockets:
            s.close()


class ServerProcess:
    """One server process; its stderr goes to ``log`` (a file: a full pipe would block it)."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        ports: Iterable[int],
        cwd: Path,
        env: Mapping[str, str],
        log: Path,
    ) -> None:
        self.log = log
        self.name = Path(command[0]).name
        with log.open("w") as stderr:
            self.process = subprocess.Popen(
                list(command), cwd=cwd, env=dict(env), stdout=subprocess.DEVNULL, stderr=stderr
            )
        try:
            for port in ports:
                self._wait_for(port)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _wait_for(self, port: int) -> None:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.name} did not listen on port {port} within "
                        f"{START_SECONDS:g}s: {self.log.read_text()[-2000:]}"
                    ) from None
                time.sleep(0.05)
