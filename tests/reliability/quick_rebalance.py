"""A plug-in for the Temporal crash tests: the built-in rebalance with shorter calls.

Temporal retries an activity whose worker died once its start-to-close timeout passed (the
call's timeout plus ``RECORD_MARGIN``): with the built-in 10 s calls each crash test would
wait 15 s for it. Load it with ``BACKSTOP_PLUGINS=tests.reliability.quick_rebalance``.
"""

import dataclasses

from runs.workflows import register
from runs.workflows.builtin import execute_rebalance_spend

WORKFLOW_ID = DECISION_TYPE = "test_quick_rebalance"
# Seconds. Shorter would cost more: a workflow task scheduled within 10 s of its worker's
# last poll waits out the dead worker's sticky queue (10 s) before another worker gets it;
# with 5.5 + RECORD_MARGIN the retried activity ends after that window.
CALL_TIMEOUT = 5.5

quick_rebalance = register(
    dataclasses.replace(
        execute_rebalance_spend,
        id=WORKFLOW_ID,
        decision_type=DECISION_TYPE,
        drill_action=None,
        drill_seed=None,
        steps=tuple(
            dataclasses.replace(
                step,
                timeout=CALL_TIMEOUT,
                compensation=step.compensation
                and dataclasses.replace(step.compensation, timeout=CALL_TIMEOUT),
            )
            for step in execute_rebalance_spend.steps
        ),
    )
)
