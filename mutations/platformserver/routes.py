"""The routes of the reference platform: the contract (``/v1``) and its control panel
(``/_control``, for tests, drills and the demo). Each turns a request into an Answer."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from mutations.platformserver import store
from mutations.platformserver.platform import Answer, Platform, error_body, parse_fault
from mutations.platformserver.store import Refused, require_object

RECORDS_PREFIX = "/v1/records/"


def parse_json(raw: bytes) -> Any:
    """Return the parsed body (None when empty), or refuse one that is not JSON."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError as error:
        raise Refused(400, "invalid_json", f"the body is not JSON: {error}") from None


def unknown_route(method: str, path: str) -> Answer:
    return Answer(404, error_body("unknown_route", f"no route {method} {path}"), "refused")


def wrong_method(allowed: list[str]) -> Answer:
    message = f"this route accepts {', '.join(allowed)}"
    return Answer(
        405,
        error_body("method_not_allowed", message),
        "refused",
        {"Allow": ", ".join(allowed)},
    )


# ---- /v1: the contract ------------------------------------------------------------------


def contract(platform: Platform, method: str, path: str, key: str | None, raw: bytes) -> Answer:
    """Answer a ``/v1`` request that passed authentication."""
    try:
        if path == "/v1/mutations":
            return mutation(platform, key, raw) if method == "POST" else wrong_method(["POST"])
        if path == "/v1/snapshot":
            return snapshot(platform, raw) if method == "POST" else wrong_method(["POST"])
        name = unquote(path.removeprefix(RECORDS_PREFIX))
        if path.startswith(RECORDS_PREFIX) and name and "/" not in name:
            return record(platform, method, path, {"record": name}, key, raw)
        return unknown_route(method, path)
    except Refused as refusal:
        return Answer.refused(refusal)


def mutation(platform: Platform, key: str | None, raw: bytes) -> Answer:
    if not key:
        raise Refused(400, "idempotency_key_required", "send an Idempotency-Key header")
    body = require_object(parse_json(raw), "the body")
    return platform.mutate(
        key=key,
        request={"method": "POST", "path": "/v1/mutations", "body": body},
        mutation_type=str(body.get("mutation_type", "")),
        change=lambda objects: store.apply_change(
            objects, body.get("mutation_type"), body.get("target"), body.get("payload", {})
        ),
    )


def snapshot(platform: Platform, raw: bytes) -> Answer:
    targets = require_object(parse_json(raw), "the body").get("targets")
    if not isinstance(targets, list):
        raise Refused(400, "invalid_payload", 'the body must be {"targets": [target, ...]}')
    return Answer(200, {"states": platform.read(targets)}, "read")


def record(
    platform: Platform,
    method: str,
    path: str,
    target: dict[str, Any],
    key: str | None,
    raw: bytes,
) -> Answer:
    """Answer the direct REST routes: a workflow's own request to "an existing API"."""
    if method == "GET":
        [state] = platform.read([target])
        if state is None:
            message = f"no record {target['record']!r}"
            return Answer(404, error_body("not_found", message), "refused")
        return Answer(200, state, "read")
    if method == "PUT":
        body = parse_json(raw)
        return platform.mutate(
            key=key or None,
            request={"method": method, "path": path, "body": body},
            mutation_type="put",
            change=lambda objects: store.replace_object(objects, target, body),
        )
    if method == "DELETE":
        return platform.mutate(
            key=key or None,
            request={"method": method, "path": path},
            mutation_type="delete",
            change=lambda objects: store.delete_object(objects, target),
        )
    return wrong_method(["GET", "PUT", "DELETE"])


# ---- /_control: tests, drills and the demo ------------------------------------------------

ControlRoute = Callable[[Platform, Any], tuple[int, Any]]


def _add_fault(platform: Platform, body: Any) -> tuple[int, Any]:
    fault = parse_fault(body)
    platform.add_fault(fault)
    return 201, dataclasses.asdict(fault)


def _seed(platform: Platform, body: Any) -> tuple[int, Any]:
    return 200, {"seeded": platform.seed(require_object(body, "the body").get("objects"))}


def _reset(platform: Platform, body: Any) -> tuple[int, Any]:
    platform.reset()
    return 200, {"reset": True}


CONTROL: dict[str, dict[str, ControlRoute]] = {
    "/_control/faults": {
        "GET": lambda platform, body: (200, {"faults": platform.faults()}),
        "POST": _add_fault,
        "DELETE": lambda platform, body: (200, {"cleared": platform.clear_faults()}),
    },
    "/_control/seed": {"POST": _seed},
    "/_control/reset": {"POST": _reset},
    "/_control/state": {"GET": lambda platform, body: (200, {"objects": platform.state()})},
    "/_control/requests": {"GET": lambda platform, body: (200, {"requests": platform.requests()})},
    "/_control/operations": {
        "GET": lambda platform, body: (200, {"operations": platform.operations()})
    },
}


def control(platform: Platform, method: str, path: str, raw: bytes) -> Answer:
    """Answer a ``/_control`` request (never authenticated, never in the request log)."""
    routes = CONTROL.get(path.rstrip("/"))
    if routes is None:
        return unknown_route(method, path)
    route = routes.get(method)
    if route is None:
        return wrong_method(list(routes))
    try:
        status, body = route(platform, parse_json(raw))
    except Refused as refusal:
        return Answer.refused(refusal)
    return Answer(status, body, "control")
