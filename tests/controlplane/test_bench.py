"""``manage.py bench`` run small on the PostgreSQL test database: the printed tables have a
row per runner count and sane values. Speeds are printed, never asserted."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from controlplane.devtools.bench_engines import engine_list
from controlplane.management.commands.bench import runner_counts
from mutations.connectors import known_platforms
from runs.workflows import registry

DECISIONS = 10  # 3 of them fail on their last step: n % 10 < 3
QUICK = ("--decisions", str(DECISIONS), "--wake-samples", "3", "--raw-seconds", "0.3")
THROUGHPUT = [
    "runners",
    "engine",
    "sagas",
    "ended",
    "completed",
    "compensated",
    "drain s",
    "sagas/s",
    "steps/s",
    "db commits/fwd step",
    "wake p50 ms",
    "wake p99 ms",
    "raw TPS",
    "steps/s : raw",
]
PER_FORWARD_STEP = [
    "runners",
    "engine",
    "fwd steps",
    "all steps",
    "SQL",
    "round trips",
    "commits",
    "CPU ms",
    "server CPU ms",
    "HTTP calls",
    "peak RSS MB",
]


@pytest.fixture(autouse=True)
def _postgresql_only(transactional_db: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("bench measures PostgreSQL")


def bench(*args: str) -> str:
    out = io.StringIO()
    call_command("bench", *QUICK, *args, stdout=out)
    return out.getvalue()


def tables(output: str) -> list[list[dict[str, str]]]:
    """Return each printed table as rows of {header: cell}; columns are 2+ spaces apart."""
    found: list[list[dict[str, str]]] = []
    header: list[str] | None = None
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] == "runners":
            header = cells
            found.append([])
        elif header is not None and line.strip():
            found[-1].append(dict(zip(header, cells, strict=True)))
        else:
            header = None
    return found


def figure(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("%"))


def assert_sane(
    throughput: dict[str, str], per_step: dict[str, str], runners: int, engine: str = "builtin"
) -> None:
    assert throughput["runners"] == per_step["runners"] == str(runners)
    assert throughput["engine"] == per_step["engine"] == engine
    assert int(throughput["sagas"]) == int(throughput["ended"]) == DECISIONS
    assert (throughput["completed"], throughput["compensated"]) == ("7", "3")
    for name in ("drain s", "sagas/s", "steps/s", "db commits/fwd step", "raw TPS"):
        assert figure(throughput[name]) > 0, name
    assert 0 < figure(throughput["wake p50 ms"]) <= figure(throughput["wake p99 ms"])
    # Two forward steps per decision; the 3 failures' credits fail and their debits are undone.
    assert (per_step["fwd steps"], per_step["all steps"]) == ("20", "23")
    if per_step["SQL"] == "n/a":  # workers that count no statements (Temporal's)
        assert engine == "temporal"
        assert per_step["round trips"] == per_step["commits"] == "n/a"
    else:
        statements, trips = figure(per_step["SQL"]), figure(per_step["round trips"])
        assert 1 < statements <= trips
        assert 0 < figure(per_step["commits"]) < trips
    assert figure(per_step["CPU ms"]) > 0
    peaks = [float(mb) for mb in per_step["peak RSS MB"].split()]
    assert len(peaks) == runners
    assert all(mb > 20 for mb in peaks)


def test_one_row_per_runner_count_on_the_sandbox_platforms() -> None:
    output = bench("--runners", "1,2")

    assert "on sandbox platforms" in output.splitlines()[0]
    throughput, per_step = tables(output)
    assert list(throughput[0]) == THROUGHPUT
    assert list(per_step[0]) == PER_FORWARD_STEP
    assert [row["runners"] for row in throughput] == ["1", "2"]
    for runners, (row, step_row) in enumerate(zip(throughput, per_step, strict=True), start=1):
        assert_sane(row, step_row, runners)
        assert step_row["HTTP calls"] == "-"
        assert step_row["server CPU ms"] == "n/a"  # no Temporal server in this engine


def test_the_same_mix_on_temporal_workers(temporal: Any) -> None:
    output = bench("--runners", "1", "--engine", "temporal")

    server = f"the Temporal server at {temporal.address} (TEMPORAL_ADDRESS)"
    assert output.splitlines()[1].endswith(f"runworkflows --engine temporal workers on {server}")
    [[row], [step_row]] = tables(output)
    assert_sane(row, step_row, 1, engine="temporal")
    assert step_row["server CPU ms"] == "-"  # a server the bench did not start: not measured


def test_the_same_mix_on_reference_http_platforms_with_latency() -> None:
    before = (set(registry.registered()), set(known_platforms()))

    output = bench("--runners", "1", "--platform-latency-ms", "5", "--in-flight", "4")

    assert "on HTTP reference platforms answering after 5 ms" in output.splitlines()[0]
    assert output.splitlines()[0].endswith("runners --in-flight 4")
    [[row], [step_row]] = tables(output)
    assert_sane(row, step_row, 1)
    assert figure(step_row["HTTP calls"]) >= 1  # each forward step calls its platform
    # The bench's own platforms and workflow are gone again from this process.
    assert (set(registry.registered()), set(known_platforms())) == before


@pytest.mark.parametrize("text", ["0", "1,x", "", "2,-1"])
def test_runner_counts_refuse_anything_but_positive_whole_numbers(text: str) -> None:
    with pytest.raises(CommandError, match="give runner counts such as 2 or 1,2,4"):
        runner_counts(text)


def test_runner_counts_read_a_comma_separated_list() -> None:
    assert runner_counts("1,2,4") == [1, 2, 4]


def test_engines_read_a_comma_separated_list_of_known_engines() -> None:
    assert engine_list("builtin,temporal") == ["builtin", "temporal"]
    assert engine_list("temporal") == ["temporal"]
    for text in ("", "temporal,temporal", "builtin,dbos"):
        with pytest.raises(ValueError, match="give builtin, temporal or builtin,temporal"):
            engine_list(text)
