"""The reference platform server's latency (``--latency-ms``): a real delay per /v1 call,
concurrent calls delayed concurrently, and no delay of the server's own."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.mutations.test_platformserver import GROUP, Platform, Server, free_port


@contextmanager
def serving(directory: Path, *args: str) -> Iterator[Platform]:
    port = free_port()
    server = Server(directory, "--port", str(port), *args)
    server.wait_until_listening(port)
    try:
        yield Platform(f"http://127.0.0.1:{port}")
    finally:
        assert server.stop() == 0


def test_latency_delays_each_v1_call_concurrently_and_no_control_call(tmp_path: Path) -> None:
    with serving(tmp_path, "--latency-ms", "1000") as platform:

        def add(n: int) -> tuple[int, float]:
            began = time.monotonic()
            response = platform.mutate(f"key-{n}", "add", {"members": f"user-{n}"})
            return response.status_code, time.monotonic() - began

        began = time.monotonic()
        platform.seed(GROUP, {"members": []})
        seeding = time.monotonic() - began
        began = time.monotonic()
        with ThreadPoolExecutor(max_workers=4) as pool:  # four connections, four threads
            answers = list(pool.map(add, range(4)))
        together = time.monotonic() - began
        [group] = platform.state()

    assert seeding < 0.5
    assert [status for status, _ in answers] == [200] * 4
    assert min(took for _, took in answers) >= 1.0
    assert together < 3.0  # one after another: 4 s or more
    assert sorted(group["state"]["members"]) == [f"user-{n}" for n in range(4)]


def test_keep_alive_calls_are_not_held_back_by_delayed_acks(tmp_path: Path) -> None:
    with serving(tmp_path) as platform, httpx.Client(base_url=platform.url) as client:
        client.post("/v1/snapshot", json={"targets": [GROUP]})  # opens the connection
        began = time.monotonic()
        for _ in range(40):
            assert client.post("/v1/snapshot", json={"targets": [GROUP]}).status_code == 200
        elapsed = time.monotonic() - began

    # Were the body written after the headers with Nagle on, each answer would wait for
    # the client's delayed ACK (about 40 ms on Linux): 1.6 s or more.
    assert elapsed < 1.2


def test_a_negative_latency_is_refused_naming_the_option(tmp_path: Path) -> None:
    server = Server(tmp_path, "--port", "0", "--latency-ms", "-5")

    assert server.wait() != 0
    assert "--latency-ms -5 is not between 0 and 60000" in server.log.read_text()
