"""Simulated ad platforms whose campaigns live in the database.

Each call is one transaction: replay a key already applied, consume a planned fault, or
apply the change and remember its result under the key.
"""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from mutations.connectors.base import (
    AmbiguousOutcome,
    Applied,
    Call,
    Change,
    FatalError,
    PlatformError,
)
from mutations.connectors.faults import fault_error, planned, take_fault
from mutations.models import SandboxCampaign, SandboxOperation
from mutations.rows import db_value, one_of, table
from mutations.timestamps import UTC_FORMAT

# platform name -> the API name its errors carry
SANDBOX_PLATFORMS = {"meta": "meta_ads", "google": "google_ads"}


SNAPSHOT_FIELDS = ("campaign_id", "name", "market", "daily_budget_micros", "status")
TARGET_FIELDS = ("campaign_id", "market")  # what a change's target may name


def _matching(target: dict[str, Any]) -> Q:
    return Q(**{field: target[field] for field in TARGET_FIELDS if field in target})


def _matches(row: dict[str, Any], target: dict[str, Any]) -> bool:
    return all(row[field] == target[field] for field in TARGET_FIELDS if field in target)


def utc_iso(moment: Any) -> str:
    return str(moment.strftime(UTC_FORMAT))


class SandboxConnector:
    sandbox = True
    in_database = True  # its state is read inside the runner's own transactions

    def __init__(self, platform: str, api_name: str) -> None:
        self.platform = platform
        self.api_name = api_name

    def apply(
        self,
        *,
        org_id: str,
        idempotency_key: str,
        change: Change,
        timeout: float,
        call: Call | None = None,
    ) -> Applied:
        request = change.as_request()
        try:
            return self._call(org_id, idempotency_key, change, request, timeout)
        except IntegrityError:
            previous = SandboxOperation.objects.filter(
                org_id=org_id, platform=self.platform, idempotency_key=idempotency_key
            ).first()
            if previous is None:  # the target matches several campaigns: say so
                return self._call(org_id, idempotency_key, change, request, timeout, at_once=False)
            # Another caller applied the same key first: answer with its result.
            return Applied(self._replay(previous, request))

    def _call(
        self,
        org_id: str,
        key: str,
        change: Change,
        request: dict[str, Any],
        timeout: float,
        *,
        at_once: bool = True,
    ) -> Applied:
        """Answer the call in one transaction: the common case in one statement
        (``at_once``); else replay a key already applied, take a planned fault, or apply the
        change step by step, saying what is wrong with it."""
        error: PlatformError | None = None
        with transaction.atomic():
            if at_once and (done := _apply_at_once(org_id, self.platform, key, change, request)):
                return Applied(done)
            if _applied_before(org_id, self.platform, key):
                previous = SandboxOperation.objects.get(
                    org_id=org_id, platform=self.platform, idempotency_key=key
                )
                return Applied(self._replay(previous, request))
            fault = take_fault(org_id, self.platform, key, change.mutation_type)
            if fault is not None:
                error = fault_error(fault, f"{self.api_name}_api", timeout)
            if error is None or isinstance(error, AmbiguousOutcome):
                result = self._apply(org_id, change)
                _remember(org_id, self.platform, key, request, result)
        if error is not None:
            raise error  # raised after commit so the consumed fault stays consumed
        return Applied(result)

    def snapshot(self, *, org_id: str, target: dict[str, Any]) -> list[dict[str, Any]]:
        return self.snapshot_many(org_id=org_id, targets=[target])[0]

    def snapshot_many(
        self, *, org_id: str, targets: list[dict[str, Any]]
    ) -> list[list[dict[str, Any]]]:
        return snapshot_platforms(org_id, {self.platform: targets})[self.platform]

    def seed(self, *, org_id: str, objects: list[dict[str, Any]]) -> None:
        """Create a campaign per object: ``{"target": {"campaign_id", "market"}, "state":
        {"daily_budget_micros", "status"?}}``."""
        SandboxCampaign.objects.bulk_create(
            SandboxCampaign(
                org_id=org_id,
                platform=self.platform,
                campaign_id=o["target"]["campaign_id"],
                name=f"{self.platform} {o['target']['market']}",
                market=o["target"]["market"],
                daily_budget_micros=o["state"]["daily_budget_micros"],
                status=o["state"].get("status", "active"),
            )
            for o in objects
        )

    def applied_keys(self, *, org_id: str, key_prefix: str) -> dict[str, int]:
        """Return each idempotency key applied here that starts with ``key_prefix``, with
        how many times a call with it was answered from the stored result."""
        operations = SandboxOperation.objects.filter(
            org_id=org_id, platform=self.platform, idempotency_key__startswith=key_prefix
        )
        return dict(operations.values_list("idempotency_key", "replays"))

    def _replay(self, previous: SandboxOperation, request: dict[str, Any]) -> dict[str, Any]:
        if previous.request != request:
            raise FatalError(
                f"{self.api_name}_api: idempotency_key_reused (code 422): key "
                f"{previous.idempotency_key!r} was first used for a different request"
            )
        SandboxOperation.objects.filter(pk=previous.pk).update(replays=F("replays") + 1)
        return dict(previous.result)

    def _campaigns(self, org_id: str, target: dict[str, Any]) -> Any:
        return SandboxCampaign.objects.filter(
            _matching(target), org_id=org_id, platform=self.platform
        )

    def _apply(self, org_id: str, change: Change) -> dict[str, Any]:
        now = timezone.now()
        changes = _changes(change)
        if changes is None:
            raise FatalError(
                f"{self.api_name}_api: unsupported_operation (code 400): {change.mutation_type}"
            )
        with connection.cursor() as cursor:
            cursor.execute(*_campaign_update(org_id, self.platform, change.target, changes, now))
            changed = cursor.rowcount
        if changed != 1:  # raising rolls the transaction back, whatever was updated
            raise self._not_applied(self._campaigns(org_id, change.target).count(), change)
        return {"applied_at": utc_iso(now)}

    def _not_applied(self, matching: int, change: Change) -> FatalError:
        api = f"{self.api_name}_api"
        if matching == 0:
            return FatalError(f"{api}: not_found (code 404): no campaign matches {change.target}")
        if matching > 1:
            return FatalError(
                f"{api}: ambiguous_target (code 400): {matching} campaigns match {change.target}"
            )
        return FatalError(
            f"{api}: invalid_budget (code 400): the daily budget of the campaign matching "
            f"{change.target} would fall below zero"
        )


# ---- the hot path in plain SQL: one statement each, no query building ---------------------


# A remembered call: its key, what was asked, what was answered. ``_operation`` gives the
# values of these columns, in this order.
OPERATION_COLUMNS = "(org_id, platform, idempotency_key, request, result, applied_at, replays)"


def _operation(
    org_id: str, platform: str, key: str, request: dict[str, Any], result: dict[str, Any], now: Any
) -> list[Any]:
    return [
        org_id,
        platform,
        key,
        db_value(SandboxOperation, "request", request),
        db_value(SandboxOperation, "result", result),
        db_value(SandboxOperation, "applied_at", now),
        0,
    ]


def _applied_before(org_id: str, platform: str, key: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT 1 FROM {table(SandboxOperation)} "
            "WHERE org_id = %s AND platform = %s AND idempotency_key = %s",
            [org_id, platform, key],
        )
        return cursor.fetchone() is not None


def _remember(
    org_id: str, platform: str, key: str, request: dict[str, Any], result: dict[str, Any]
) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table(SandboxOperation)} {OPERATION_COLUMNS} "
            "VALUES (%s, %s, %s, %s, %s, %s, %s)",
            _operation(org_id, platform, key, request, result, timezone.now()),
        )


def snapshot_platforms(
    org_id: str, targets: dict[str, list[dict[str, Any]]]
) -> dict[str, list[list[dict[str, Any]]]]:
    """Return, by platform, the campaigns each target names (by id), for all the
    platforms reading in one statement (the sandbox platforms share one table) the
    campaigns any target could name, then keeping each target's own."""
    every = [target for platform_targets in targets.values() for target in platform_targets]
    if not every:
        return {platform: [] for platform in targets}
    where, params = one_of("platform", sorted(targets))
    if all(any(name in target for name in TARGET_FIELDS) for target in every):
        named = []  # campaign_id = ANY(...) OR market = ANY(...)
        for name in TARGET_FIELDS:
            values = sorted({target[name] for target in every if name in target})
            if values:
                condition, condition_params = one_of(name, values)
                named.append(condition)
                params += condition_params
        where += f" AND ({' OR '.join(named)})"
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT platform, {', '.join(SNAPSHOT_FIELDS)} FROM {table(SandboxCampaign)} "
            f"WHERE org_id = %s AND {where} ORDER BY campaign_id",
            [org_id, *params],
        )
        found = [(row[0], dict(zip(SNAPSHOT_FIELDS, row[1:], strict=True))) for row in cursor]
    return {
        platform: [
            [row for row_platform, row in found if row_platform == platform and _matches(row, t)]
            for t in platform_targets
        ]
        for platform, platform_targets in targets.items()
    }


def _changes(change: Change) -> dict[str, Any] | None:
    """Return what the change sets on its campaigns: a budget delta (an increment, never
    below zero) or a status; None for a change this platform does not support."""
    if change.mutation_type == "update_budget":
        return {"daily_budget_micros": int(change.payload["daily_budget_delta_micros"])}
    if change.mutation_type in ("set_status", "delete_campaign"):
        return {"status": change.payload["status"]}
    return None


def _apply_at_once(
    org_id: str, platform: str, key: str, change: Change, request: dict[str, Any]
) -> dict[str, Any] | None:
    """Make the common call in one statement (PostgreSQL): apply the change to the campaign
    its target matches and remember the result under the key, unless the key was applied
    before or a fault is planned for the call. Return the result, or None when nothing was
    applied: the call then goes on step by step, which replays the key, takes the fault or
    says what is wrong.

    A target matching several campaigns would remember one result per campaign under the
    same key: the key's unique constraint fails the statement (and the transaction)."""
    changes = _changes(change)
    if connection.vendor != "postgresql" or changes is None:
        return None
    now = timezone.now()
    result = {"applied_at": utc_iso(now)}
    update, params = _campaign_update(org_id, platform, change.target, changes, now)
    faults, fault_params = planned(org_id, platform, key, change.mutation_type)
    operations = table(SandboxOperation)
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH changed AS ({update} AND NOT EXISTS (SELECT 1 FROM {operations} "
            "WHERE org_id = %s AND platform = %s AND idempotency_key = %s) "
            f"AND NOT EXISTS ({faults}) RETURNING 1) "
            f"INSERT INTO {operations} {OPERATION_COLUMNS} "
            "SELECT %s, %s, %s, %s, %s, %s, %s FROM changed",
            [
                *params,
                *(org_id, platform, key),
                *fault_params,
                *_operation(org_id, platform, key, request, result, now),
            ],
        )
        return result if cursor.rowcount == 1 else None


def _campaign_update(
    org_id: str,
    platform: str,
    target: dict[str, Any],
    changes: dict[str, Any],
    now: Any,
) -> tuple[str, list[Any]]:
    """Return the UPDATE that applies ``changes`` to the campaigns matching ``target``
    (its WHERE clause last, for more conditions), and its parameters."""
    where = ["org_id = %s", "platform = %s"]
    params: list[Any] = [org_id, platform]
    for name in TARGET_FIELDS:
        if name in target:
            where.append(f"{name} = %s")
            params.append(target[name])
    if "daily_budget_micros" in changes:
        delta = changes["daily_budget_micros"]
        setting = "daily_budget_micros = daily_budget_micros + %s"
        where.append("daily_budget_micros >= %s")
        values: list[Any] = [delta]
        params.append(-delta)
    else:
        setting, values = "status = %s", [changes["status"]]
    return (
        f"UPDATE {table(SandboxCampaign)} SET {setting}, updated_at = %s "
        f"WHERE {' AND '.join(where)}",
        [*values, db_value(SandboxCampaign, "updated_at", now), *params],
    )


def open_campaigns(
    *, org_id: str, markets: list[str], daily_budget_micros: int, platforms: Any = SANDBOX_PLATFORMS
) -> None:
    """Create one campaign per platform in each market (``<platform>-<market>``)."""
    SandboxCampaign.objects.bulk_create(
        SandboxCampaign(
            org_id=org_id,
            platform=platform,
            campaign_id=f"{platform}-{market}",
            name=f"{platform} {market}",
            market=market,
            daily_budget_micros=daily_budget_micros,
        )
        for market in markets
        for platform in platforms
    )
