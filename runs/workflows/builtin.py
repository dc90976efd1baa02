"""The built-in workflows: budget moves and campaign status changes on ad platforms."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from mutations.connectors import Change, known_platforms
from runs.retry import RetryPolicy
from runs.workflows.action_fields import NO_NUL
from runs.workflows.registry import (
    Compensation,
    DecisionDoc,
    Reversibility,
    Step,
    Workflow,
    register,
)

MICROS_PER_UNIT = 1_000_000
SUPPORTED_CURRENCIES = ("USD",)
SUPPORTED_CADENCES = ("daily",)

# Budget changes are time-sensitive: rather than wait out a long rate-limit window, give
# up after a few quick attempts and let the run compensate.
DRILL_BUDGET_MICROS = 1_000_000_000  # $1,000/day on each drill campaign
BUDGET_RETRY = RetryPolicy(max_attempts=3, initial_interval=1.0, retry_after_cap=2.0)


def to_micros(amount: Any) -> int:
    return int(Decimal(str(amount)) * MICROS_PER_UNIT)


def budget_change(platform: str, scope: Mapping[str, Any], delta_micros: int) -> Change:
    return Change(
        platform=platform,
        mutation_type="update_budget",
        payload={"daily_budget_delta_micros": delta_micros},
        target=dict(scope),
    )


def invert_budget_change(change: Change) -> Change:
    return budget_change(
        change.platform, change.target, -int(change.payload["daily_budget_delta_micros"])
    )


def status_change(platform: str, scope: Mapping[str, Any], status: str) -> Change:
    return Change(
        platform=platform,
        mutation_type="set_status",
        payload={"status": status},
        target=dict(scope),
    )


# ---- validation of the action each workflow needs --------------------------------------


def _check_platform(action: Mapping[str, Any], field: str, errors: dict[str, str]) -> None:
    value = action.get(field)
    if value not in known_platforms():
        errors[f"action.{field}"] = f"must be one of {', '.join(known_platforms())}; got {value!r}"


def _check_amount(
    action: Mapping[str, Any], errors: dict[str, str], *, positive: bool = True
) -> None:
    value = action.get("amount")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        errors["action.amount"] = "must be a number"
        return
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        errors["action.amount"] = f"must be a number; got {value!r}"
        return
    if not amount.is_finite() or (positive and amount <= 0) or amount == 0:
        errors["action.amount"] = "must be a positive number" if positive else "must not be 0"
    elif amount.as_tuple().exponent < -6:  # type: ignore[operator]
        errors["action.amount"] = "has more than 6 decimal places"


def _check_money(action: Mapping[str, Any], errors: dict[str, str]) -> None:
    if action.get("currency") not in SUPPORTED_CURRENCIES:
        errors["action.currency"] = f"must be one of {', '.join(SUPPORTED_CURRENCIES)}"
    if action.get("cadence") not in SUPPORTED_CADENCES:
        errors["action.cadence"] = f"must be one of {', '.join(SUPPORTED_CADENCES)}"


def _check_scope(action: Mapping[str, Any], errors: dict[str, str]) -> None:
    scope = action.get("scope")
    if not isinstance(scope, dict) or not scope:
        errors["action.scope"] = 'must be an object such as {"market": "all"}'
    elif not all(isinstance(v, str) for v in scope.values()):
        errors["action.scope"] = "values must be strings"


def validate_rebalance(action: Mapping[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    _check_platform(action, "source_channel", errors)
    _check_platform(action, "target_channel", errors)
    if "action.source_channel" not in errors and action.get("source_channel") == action.get(
        "target_channel"
    ):
        errors["action.target_channel"] = "must differ from source_channel"
    _check_amount(action, errors)
    _check_money(action, errors)
    _check_scope(action, errors)
    return errors


def validate_adjust_budget(action: Mapping[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    _check_platform(action, "channel", errors)
    _check_amount(action, errors, positive=False)
    _check_money(action, errors)
    _check_scope(action, errors)
    return errors


def validate_pause(action: Mapping[str, Any]) -> dict[str, str]:
    errors: dict[str, str] = {}
    _check_platform(action, "channel", errors)
    _check_scope(action, errors)
    return errors


# ---- the JSON Schemas of those actions (exactly what the checks above accept) ------------

SCOPE_SCHEMA = {
    "type": "object",
    "minProperties": 1,
    "propertyNames": {"pattern": NO_NUL},
    "additionalProperties": {"type": "string", "pattern": NO_NUL},
    "description": 'the campaigns in scope, e.g. {"market": "all"}',
}
MONEY_SCHEMA = {
    "currency": {"type": "string", "enum": list(SUPPORTED_CURRENCIES)},
    "cadence": {"type": "string", "enum": list(SUPPORTED_CADENCES)},
}
# At most 6 decimal places: an amount is kept in millionths (micros).
AMOUNT = {"type": "number", "multipleOf": 1 / MICROS_PER_UNIT}


def _channel(description: str) -> dict[str, Any]:
    return {"type": "string", "enum": known_platforms(), "description": description}


def _object(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    # Keys the checks do not look at are passed over; the schema leaves them out.
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
        **extra,
    }


def rebalance_schema() -> dict[str, Any]:
    schema = _object(
        {
            "source_channel": _channel("the platform debited"),
            "target_channel": _channel("the platform credited"),
            "amount": {**AMOUNT, "exclusiveMinimum": 0, "description": "per day, in currency"},
            **MONEY_SCHEMA,
            "scope": SCOPE_SCHEMA,
        },
        # The two channels differ.
        allOf=[
            {"not": {"properties": {f: {"const": p} for f in CHANNELS}, "required": CHANNELS}}
            for p in known_platforms()
        ],
    )
    schema["properties"]["reason"] = {"type": "string", "pattern": NO_NUL}
    return schema


CHANNELS = ["source_channel", "target_channel"]


def adjust_budget_schema() -> dict[str, Any]:
    return _object(
        {
            "channel": _channel("the platform whose budget changes"),
            "amount": {
                **AMOUNT,
                "not": {"const": 0},
                "description": "added per day; below 0 lowers",
            },
            **MONEY_SCHEMA,
            "scope": SCOPE_SCHEMA,
        }
    )


def campaign_schema() -> dict[str, Any]:
    return _object({"channel": _channel("the platform of the campaigns"), "scope": SCOPE_SCHEMA})


# ---- the workflows ----------------------------------------------------------------------


def _action(decision: DecisionDoc) -> Mapping[str, Any]:
    action: Mapping[str, Any] = decision["action"]
    return action


def _drilled(**action: Any) -> Callable[[str], dict[str, Any]]:
    """Return a drill's action: these values, on campaigns of the drill's own market."""
    return lambda market: {**action, "scope": {"market": market}}


def _drill_campaigns(*platforms: str) -> Callable[[str], dict[str, list[dict[str, Any]]]]:
    """Return a drill's seed: a campaign on each platform, in the drill's own market."""
    return lambda market: {
        platform: [
            {
                "target": {"campaign_id": f"{platform}-{market}", "market": market},
                "state": {"daily_budget_micros": DRILL_BUDGET_MICROS},
            }
        ]
        for platform in platforms
    }


execute_rebalance_spend = register(
    Workflow(
        id="execute_rebalance_spend",
        version=1,
        decision_type="rebalance_spend",
        topic="ads.budget",
        description="Move a daily budget from one channel to another.",
        scope=lambda d: {
            _action(d)["source_channel"]: dict(_action(d)["scope"]),
            _action(d)["target_channel"]: dict(_action(d)["scope"]),
        },
        validate_action=validate_rebalance,
        action_json_schema=rebalance_schema,
        drill_action=_drilled(
            source_channel="meta",
            target_channel="google",
            amount=800,
            currency="USD",
            cadence="daily",
            reason="compensation_drill",
        ),
        drill_seed=_drill_campaigns("meta", "google"),
        steps=(
            Step(
                id="debit_source_channel",
                build=lambda d: budget_change(
                    _action(d)["source_channel"],
                    _action(d)["scope"],
                    -to_micros(_action(d)["amount"]),
                ),
                compensation=Compensation(id="credit_source_channel", build=invert_budget_change),
                retry=BUDGET_RETRY,
            ),
            Step(
                id="credit_target_channel",
                build=lambda d: budget_change(
                    _action(d)["target_channel"],
                    _action(d)["scope"],
                    to_micros(_action(d)["amount"]),
                ),
                compensation=Compensation(id="debit_target_channel", build=invert_budget_change),
                retry=BUDGET_RETRY,
            ),
        ),
    )
)

adjust_budget = register(
    Workflow(
        id="adjust_budget",
        version=1,
        decision_type="adjust_budget",
        topic="ads.budget",
        description="Raise or lower one channel's daily budget.",
        scope=lambda d: {_action(d)["channel"]: dict(_action(d)["scope"])},
        validate_action=validate_adjust_budget,
        action_json_schema=adjust_budget_schema,
        drill_action=_drilled(channel="meta", amount=100, currency="USD", cadence="daily"),
        drill_seed=_drill_campaigns("meta"),
        steps=(
            Step(
                id="update_channel_budget",
                build=lambda d: budget_change(
                    _action(d)["channel"], _action(d)["scope"], to_micros(_action(d)["amount"])
                ),
                compensation=Compensation(id="restore_channel_budget", build=invert_budget_change),
                retry=BUDGET_RETRY,
            ),
        ),
    )
)

pause_campaign = register(
    Workflow(
        id="pause_campaign",
        version=1,
        decision_type="pause_campaign",
        topic="ads.status",
        description="Pause the campaigns of a channel in a scope.",
        scope=lambda d: {_action(d)["channel"]: dict(_action(d)["scope"])},
        validate_action=validate_pause,
        action_json_schema=campaign_schema,
        drill_action=_drilled(channel="meta"),
        drill_seed=_drill_campaigns("meta"),
        steps=(
            Step(
                id="pause_channel_campaign",
                build=lambda d: status_change(_action(d)["channel"], _action(d)["scope"], "paused"),
                compensation=Compensation(
                    id="resume_channel_campaign",
                    build=lambda c: status_change(c.platform, c.target, "active"),
                ),
            ),
        ),
    )
)

delete_campaign = register(
    Workflow(
        id="delete_campaign",
        version=1,
        decision_type="delete_campaign",
        topic="ads.delete",
        description="Delete the campaign of a channel in a scope. It cannot be undone.",
        scope=lambda d: {_action(d)["channel"]: dict(_action(d)["scope"])},
        validate_action=validate_pause,
        action_json_schema=campaign_schema,
        drill_action=_drilled(channel="meta"),
        drill_seed=_drill_campaigns("meta"),
        steps=(
            Step(
                id="delete_channel_campaign",
                build=lambda d: Change(
                    platform=_action(d)["channel"],
                    mutation_type="delete_campaign",
                    payload={"status": "deleted"},
                    target=dict(_action(d)["scope"]),
                ),
                no_rollback_reason="a deleted campaign cannot be restored",
                reversibility=Reversibility.IRREVERSIBLE,
            ),
        ),
    )
)
