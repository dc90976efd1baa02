"""A runner killed with SIGKILL at each named crash point loses nothing and doubles nothing."""

import random
import signal
import time

import pytest

from controlplane.models import ServiceAccount
from runs.crashpoints import POINTS
from tests.processes import Runners, stderr_of
from tests.reliability.conftest import (
    assert_exactly_once,
    make_markets,
    submit_mix,
    unfinished_runs,
)


@pytest.mark.parametrize("point", POINTS)
def test_runner_killed_at_crash_point_then_replaced(
    agent: ServiceAccount, runners: Runners, point: str
) -> None:
    markets = make_markets(agent, 3)
    plan = submit_mix(agent, 6, markets, fail_every=2)

    crashed = runners.start(crash_at=point)
    assert crashed.wait(timeout=60) == -signal.SIGKILL, stderr_of(crashed)
    replacement = runners.start("--until-idle")
    assert replacement.wait(timeout=60) == 0, stderr_of(replacement)

    assert_exactly_once(plan)


def test_random_kills_while_draining_200_decisions(agent: ServiceAccount, runners: Runners) -> None:
    markets = make_markets(agent, 25)
    plan = submit_mix(agent, 200, markets, fail_every=3)
    rng = random.Random(20261123)
    live = [runners.start(), runners.start()]
    kills_mid_work = 0
    deadline = time.monotonic() + 240
    while unfinished_runs() or kills_mid_work < 20:
        assert time.monotonic() < deadline, f"still unfinished after {kills_mid_work} kills"
        if not unfinished_runs():  # the runners were faster than the kills: more work
            more = submit_mix(agent, 50, markets, fail_every=3)
            plan.expected_status.update(more.expected_status)
            plan.expected_budgets.update(more.expected_budgets)
        time.sleep(rng.uniform(0.05, 0.4))
        victim = rng.randrange(len(live))
        live[victim].send_signal(signal.SIGKILL)
        live[victim].wait()
        kills_mid_work += bool(unfinished_runs())
        live[victim] = runners.start()

    assert kills_mid_work >= 20
    assert_exactly_once(plan)
