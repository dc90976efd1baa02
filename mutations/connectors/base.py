"""What a platform connector promises, and how its failures are classified."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable


@dataclass(frozen=True)
class Change:
    """One change to apply on a platform: which object, and what to do to it."""

    platform: str
    mutation_type: str
    payload: dict[str, Any]
    target: dict[str, Any] = field(default_factory=dict)
    # An HTTP platform's own request ({"method", "path", "json"}) to send instead of the
    # contract's POST /v1/mutations; the log still records type, target and payload.
    request: dict[str, Any] | None = None

    def as_request(self) -> dict[str, Any]:
        return {"mutation_type": self.mutation_type, "target": self.target, "payload": self.payload}


@dataclass(frozen=True)
class Call:
    """Whose change a call applies: what a platform hears besides the change itself."""

    decision_id: str
    run_id: str
    step_id: str
    kind: str  # forward | compensation


@dataclass(frozen=True)
class Applied:
    """A change the platform applied: its result, and how it answered (``receipt``: e.g.
    ``http_status`` and ``request_id``, shown on the timeline)."""

    result: dict[str, Any]
    receipt: dict[str, Any] = field(default_factory=dict)


class PlatformError(Exception):
    """A platform refused or lost a call. ``retryable`` says whether trying again may help."""

    kind: ClassVar[str] = "error"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        receipt: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.receipt = receipt or {}


class RateLimited(PlatformError):
    kind = "rate_limit"
    retryable = True


class TransientError(PlatformError):
    kind = "transient"
    retryable = True


class PlatformTimeout(TransientError):
    kind = "timeout"


class FatalError(PlatformError):
    kind = "fatal"


class AmbiguousOutcome(PlatformError):
    """The change may have been applied but the answer was lost; retry with the same key."""

    kind = "ambiguous"
    retryable = True


class Connector(Protocol):
    platform: str
    api_name: str
    sandbox: bool  # simulated: drills may only ever touch sandbox connectors
    # Its platform's state lives in Backstop's database (the built-in sandbox): runners
    # read it inside their own transactions. Others are read by a call in flight.
    in_database: bool

    def apply(
        self,
        *,
        org_id: str,
        idempotency_key: str,
        change: Change,
        timeout: float,
        call: Call | None = None,
    ) -> Applied:
        """Apply the change once per key and return the platform's result."""
        ...

    def snapshot(self, *, org_id: str, target: dict[str, Any]) -> Any:
        """Return the state of the objects the target names, without volatile fields."""
        ...

    def snapshot_many(self, *, org_id: str, targets: list[dict[str, Any]]) -> list[Any]:
        """Return ``snapshot`` of each target, in order, in as few calls as it can."""
        ...


@runtime_checkable
class SeedsObjects(Protocol):
    """A sandbox connector that can create the objects a drill's run needs."""

    def seed(self, *, org_id: str, objects: list[dict[str, Any]]) -> None:
        """Set each ``{"target", "state"}`` object on the platform."""
        ...


@runtime_checkable
class ReportsOperations(Protocol):
    """A connector that can say which keys its platform applied (drills check it)."""

    def applied_keys(self, *, org_id: str, key_prefix: str) -> dict[str, int] | None:
        """Return each applied key starting with ``key_prefix`` and its replay count, or
        None when the platform does not say."""
        ...
