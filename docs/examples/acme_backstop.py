"""Acme's Backstop plug-in: onboard a contractor across IAM, ticketing and billing.

Load it with ``BACKSTOP_PLUGINS=acme_backstop`` (the module must be importable: installed,
or on ``PYTHONPATH``). The platforms ``iam``, ``ticketing`` and ``billing`` come from the
platforms file; a plug-in may also add connectors of its own with ``register_connector``.
"""

from collections.abc import Mapping
from typing import Any

from mutations.connectors import Change, HttpConnector, HttpPlatform, register_connector
from runs.workflows import Compensation, RetryPolicy, Step, Workflow, register

# A platform declared in code rather than in the platforms file (not used by the workflow).
register_connector(
    HttpConnector(HttpPlatform(name="acme_audit", base_url="http://127.0.0.1:9199", sandbox=True))
)


def validate(action: Mapping[str, Any]) -> dict[str, str]:
    """Return what is wrong with the decision's action, by field (empty when valid)."""
    return {
        f"action.{name}": "required text"
        for name in ("user", "group", "cost_center")
        if not isinstance(action.get(name), str) or not action[name]
    }


def undo(mutation_type: str, payload: dict[str, Any] | None = None) -> Any:
    """Build a compensation: the same target, the inverse change."""
    return lambda applied: Change(
        platform=applied.platform,
        mutation_type=mutation_type,
        payload=applied.payload if payload is None else payload,
        target=applied.target,
    )


register(
    Workflow(
        id="onboard_contractor",
        version=1,
        decision_type="onboard_contractor",
        topic="access.grant",
        description="Add a contractor to a group, open the onboarding ticket, reserve a seat.",
        validate_action=validate,
        scope=lambda d: {
            "iam": {"group": d["action"]["group"]},
            "ticketing": {"ticket": f"ONBOARD-{d['id']}"},
            "billing": {"account": d["action"]["cost_center"]},
        },
        steps=(
            Step(
                id="add_to_group",
                platform="iam",
                build=lambda d: Change(
                    platform="iam",
                    mutation_type="add",
                    payload={"members": d["action"]["user"]},
                    target={"group": d["action"]["group"]},
                ),
                compensation=Compensation(id="remove_from_group", build=undo("remove")),
                retry=RetryPolicy(max_attempts=3, initial_interval=1.0),
            ),
            Step(
                id="open_onboarding_ticket",
                platform="ticketing",
                build=lambda d: Change(
                    platform="ticketing",
                    mutation_type="create",
                    payload={"summary": f"Onboard {d['action']['user']}", "status": "open"},
                    target={"ticket": f"ONBOARD-{d['id']}"},
                ),
                compensation=Compensation(id="delete_onboarding_ticket", build=undo("delete", {})),
            ),
            Step(
                id="reserve_seat",
                platform="billing",
                build=lambda d: Change(
                    platform="billing",
                    mutation_type="increment",
                    payload={"seats_available": -1},
                    target={"account": d["action"]["cost_center"]},
                ),
                compensation=Compensation(
                    id="release_seat", build=undo("increment", {"seats_available": 1})
                ),
                retry=RetryPolicy(max_attempts=3, initial_interval=1.0),
            ),
        ),
    )
)
