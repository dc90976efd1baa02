"""One reference platform's state: objects, idempotency records, planned faults and the
log of requests received, all guarded by one lock.

A call checks its idempotency key, consumes a planned fault and applies its change in one
critical section, so two calls with one key never both apply.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mutations.platformserver.store import Objects, Refused, canonical, require_object

FAULT_KINDS = ("rate_limit", "transient", "timeout", "fatal", "ambiguous")
FAULT_FIELDS = ("kind", "key_prefix", "mutation_type", "count", "retry_after", "delay", "status")

Change = Callable[[Objects], dict[str, Any] | None]


def new_id(prefix: str, hex_digits: int) -> str:
    return f"{prefix}_{secrets.token_hex(hex_digits // 2)}"


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@dataclass(frozen=True)
class Answer:
    """What the server sends back for one request, and how the request log names it."""

    status: int
    body: Any
    outcome: str  # applied | replayed | refused | fault:<kind> | read (| control, error)
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without a response

    @classmethod
    def refused(cls, refusal: Refused) -> Answer:
        return cls(refusal.status, error_body(refusal.code, refusal.message), "refused")


@dataclass
class Fault:
    id: str
    kind: str
    key_prefix: str = ""
    mutation_type: str = ""
    count: int | None = 1  # None: every matching call
    retry_after: float = 2.0
    delay: float = 30.0
    status: int = 400

    def matches(self, key: str | None, mutation_type: str) -> bool:
        return (
            (self.count is None or self.count > 0)
            and (key or "").startswith(self.key_prefix)
            and self.mutation_type in ("", mutation_type)
        )

    def answer(self) -> Answer:
        """Return the refusal a rate_limit, transient or fatal fault answers with."""
        outcome = f"fault:{self.kind}"
        if self.kind == "rate_limit":
            return Answer(
                429,
                error_body("rate_limited", f"too many requests; retry after {self.retry_after:g}s"),
                outcome,
                {"Retry-After": f"{self.retry_after:g}"},
            )
        if self.kind == "transient":
            return Answer(503, error_body("unavailable", "temporarily unavailable"), outcome)
        return Answer(self.status, error_body("injected_failure", "a planned fatal fault"), outcome)


def parse_fault(body: Any) -> Fault:
    """Return the fault a ``POST /_control/faults`` body plans, or raise naming the field."""
    body = require_object(body, "a fault")

    def invalid(name: str, expected: str) -> Refused:
        return Refused(400, "invalid_fault", f"{name} must be {expected}; got {body[name]!r}")

    unknown = sorted(set(body) - set(FAULT_FIELDS))
    if unknown:
        raise Refused(400, "invalid_fault", f"unknown field(s) {', '.join(unknown)}")
    if body.get("kind") not in FAULT_KINDS:
        raise Refused(400, "invalid_fault", f"kind must be one of {', '.join(FAULT_KINDS)}")
    for name in ("key_prefix", "mutation_type"):
        if name in body and not isinstance(body[name], str):
            raise invalid(name, "text")
    count = body.get("count", 1)
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise invalid("count", "a whole number of at least 1, or null for every call")
    for name in ("retry_after", "delay"):
        value = body.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise invalid(name, "a number of seconds")
    status = body.get("status", 400)
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise invalid("status", "an HTTP error status (400-599)")
    return Fault(
        id=new_id("flt", 12),
        kind=body["kind"],
        key_prefix=body.get("key_prefix", ""),
        mutation_type=body.get("mutation_type", ""),
        count=count,
        retry_after=float(body.get("retry_after", 2.0)),
        delay=float(body.get("delay", 30.0)),
        status=status,
    )


@dataclass
class Operation:
    """The first answer given under an idempotency key, replayed for the same request."""

    key: str
    request: str  # canonical JSON of method, path and body
    status: int
    body: Any
    applied: bool
    replays: int = 0


class Platform:
    """One platform's objects, idempotency records, faults and request log, under one lock."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._objects: Objects = {}
        self._operations: dict[str, Operation] = {}
        self._faults: list[Fault] = []
        self._requests: list[dict[str, Any]] = []

    # ---- changes ---------------------------------------------------------------------------

    def mutate(
        self, *, key: str | None, request: Any, mutation_type: str, change: Change
    ) -> Answer:
        """Replay, refuse with a planned fault, or apply ``change`` and keep its answer."""
        fingerprint = canonical(request)
        with self._lock:
            if key is not None and key in self._operations:
                return self._replay(key, fingerprint)
            fault = next((f for f in self._faults if f.matches(key, mutation_type)), None)
            if fault is not None and fault.count is not None:
                fault.count -= 1
            if fault is None:
                return self._apply(key, fingerprint, change)
            if fault.kind == "ambiguous":
                answer = self._apply(key, fingerprint, change)
                return dataclasses.replace(answer, outcome="fault:ambiguous", drop=True)
            if fault.kind != "timeout":
                return fault.answer()
        # Sleep without the lock: a retry with the same key may apply meanwhile, and then
        # this call answers with that result instead of applying a second time.
        time.sleep(fault.delay)
        with self._lock:
            if key is not None and key in self._operations:
                answer = self._replay(key, fingerprint, counted=False)
            else:
                answer = self._apply(key, fingerprint, change)
        return dataclasses.replace(answer, outcome="fault:timeout")

    def _replay(self, key: str, fingerprint: str, counted: bool = True) -> Answer:
        operation = self._operations[key]
        if operation.request != fingerprint:
            return Answer(
                409,
                error_body(
                    "idempotency_key_reused",
                    f"idempotency key {key!r} was used for a different request",
                ),
                "refused",
            )
        operation.replays += int(counted)
        return Answer(operation.status, operation.body, "replayed", {"Idempotent-Replayed": "true"})

    def _apply(self, key: str | None, fingerprint: str, change: Change) -> Answer:
        try:
            after = change(self._objects)
        except Refused as refusal:
            answer = Answer.refused(refusal)
        else:
            body = {"applied": True, "object": after, "operation_id": new_id("op", 16)}
            answer = Answer(200, body, "applied")
        if key is not None:
            self._operations[key] = Operation(
                key, fingerprint, answer.status, answer.body, applied=answer.status < 300
            )
        return answer

    # ---- reads -----------------------------------------------------------------------------

    def read(self, targets: list[Any]) -> list[dict[str, Any] | None]:
        """Return the object at each target, or None where there is none."""
        keys = [canonical(require_object(target, "each target")) for target in targets]
        with self._lock:
            return [copy.deepcopy(self._objects.get(key)) for key in keys]

    def state(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"target": json.loads(key), "state": copy.deepcopy(self._objects[key])}
                for key in sorted(self._objects)
            ]

    def operations(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "idempotency_key": o.key,
                    "status": o.status,
                    "applied": o.applied,
                    "replays": o.replays,
                }
                for o in self._operations.values()
            ]

    # ---- the request log -------------------------------------------------------------------

    def log_request(self, entry: dict[str, Any]) -> None:
        """Append a request on arrival; ``finish_request`` records how it was answered."""
        with self._lock:
            self._requests.append(entry)

    def finish_request(self, entry: dict[str, Any], status: int | None, outcome: str) -> None:
        with self._lock:
            entry.update(status=status, outcome=outcome)

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._requests]

    # ---- control ---------------------------------------------------------------------------

    def add_fault(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dataclasses.asdict(fault) for fault in self._faults]

    def clear_faults(self) -> int:
        with self._lock:
            cleared, self._faults = len(self._faults), []
            return cleared

    def seed(self, objects: Any) -> int:
        """Set (or, with a null state, remove) the object at each target."""
        if not isinstance(objects, list):
            raise Refused(400, "invalid_payload", 'objects must be a list of {"target", "state"}')
        entries = []
        for entry in objects:
            entry = require_object(entry, "each object")
            target = canonical(require_object(entry.get("target"), "target"))
            state = entry.get("state")
            entries.append((target, None if state is None else require_object(state, "state")))
        with self._lock:
            for target, state in entries:
                if state is None:
                    self._objects.pop(target, None)
                else:
                    self._objects[target] = copy.deepcopy(state)
        return len(entries)

    def reset(self) -> None:
        with self._lock:
            self._objects.clear()
            self._operations.clear()
            self._faults.clear()
            self._requests.clear()
