"""A team's own platform over HTTP, speaking Backstop's documented contract.

apply: ``POST {base_url}/v1/mutations`` with the step's stable ``Idempotency-Key`` (or the
step's own request), optionally a bearer token and an HMAC-SHA256 signature; state:
``POST {base_url}/v1/snapshot``, or a target's own ``{"request": {method, path, json}}``
whose JSON answer is the state (404: absent). HTTP outcomes map onto the four error
classes, so the engine retries, waits or compensates exactly as it does for the sandbox.
A platform marked ``sandbox`` takes drills' planned faults before a call leaves.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from mutations.connectors.base import (
    AmbiguousOutcome,
    Applied,
    Call,
    Change,
    FatalError,
    PlatformError,
    RateLimited,
    TransientError,
)
from mutations.connectors.faults import fault_error, take_fault
from mutations.connectors.platforms_file import HttpPlatform

MUTATIONS_PATH = "/v1/mutations"
SNAPSHOT_PATH = "/v1/snapshot"
OPERATIONS_PATH = "/_control/operations"  # the reference server's; other platforms may 404
REQUEST_ID_HEADERS = ("X-Request-Id", "Request-Id")
# Failures that happen before a byte of the request left: the platform cannot have acted.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


class TokenBucket:
    """A client-side rate limit: ``rate`` calls a second, bursts of up to ``rate`` calls."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._tokens = self.capacity
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> None:
        """Wait until a call may go out, then spend its token."""
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
                self._at = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                wait = (1 - self._tokens) / self.rate
            time.sleep(wait)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Return the ``X-Backstop-Signature`` value for a body sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + digest.hexdigest()


def retry_after_seconds(value: str | None) -> float | None:
    """Read a ``Retry-After`` header: delay seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


class HttpConnector:
    in_database = False

    def __init__(self, config: HttpPlatform, *, transport: httpx.BaseTransport | None = None):
        self.config = config
        self.platform = config.name
        self.api_name = config.api_name or f"{config.name}_api"
        self.sandbox = config.sandbox
        self._token = config.bearer_token()
        self._secret = config.signing_secret()
        self._slots = threading.BoundedSemaphore(config.max_in_flight)
        self._bucket = (
            TokenBucket(config.requests_per_second) if config.requests_per_second else None
        )
        self._transport = transport
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()

    def __repr__(self) -> str:  # never the token or the secret
        return f"HttpConnector({self.platform!r}, {self.config.base_url!r})"

    # ---- the connector protocol ------------------------------------------------------------

    def apply(
        self,
        *,
        org_id: str,
        idempotency_key: str,
        change: Change,
        timeout: float,
        call: Call | None = None,
    ) -> Applied:
        if change.request is not None:
            method = str(change.request.get("method", "POST")).upper()
            path = str(change.request["path"])
            body = change.request.get("json")
        else:
            method, path = "POST", MUTATIONS_PATH
            body = {
                **change.as_request(),
                "decision_id": call.decision_id if call else None,
                "run_id": call.run_id if call else None,
                "step_id": call.step_id if call else None,
                "kind": call.kind if call else "forward",
            }
        planned = self._planned_fault(org_id, idempotency_key, change, timeout)
        if planned is not None and not isinstance(planned, AmbiguousOutcome):
            raise planned  # the call never leaves: the platform cannot have acted
        response = self._send(method, path, body, timeout=timeout, key=idempotency_key)
        receipt = _receipt(response)
        if planned is not None:  # applied (or refused), and the answer is lost
            raise AmbiguousOutcome(planned.message, receipt=receipt)
        if response.is_success:
            return Applied(_json_object(response), receipt)
        raise self._refusal(response, receipt)

    def snapshot(self, *, org_id: str, target: dict[str, Any]) -> Any:
        return self.snapshot_many(org_id=org_id, targets=[target])[0]

    def snapshot_many(self, *, org_id: str, targets: list[dict[str, Any]]) -> list[Any]:
        own = [n for n, target in enumerate(targets) if _snapshot_request(target) is None]
        states: list[Any] = [None] * len(targets)
        if own:
            answered = self._contract_snapshot([targets[n] for n in own])
            for n, state in zip(own, answered, strict=True):
                states[n] = state
        for n, target in enumerate(targets):
            if (request := _snapshot_request(target)) is not None:
                states[n] = self._requested_state(request)
        return states

    def seed(self, *, org_id: str, objects: list[dict[str, Any]]) -> None:
        """Create a drill's objects: ``POST /_control/seed`` (the reference server's)."""
        path = "/_control/seed"
        response = self._send(
            "POST", path, {"objects": objects}, timeout=self.config.timeout_seconds
        )
        if not response.is_success:
            raise FatalError(
                f"{self.api_name}: POST {path} answered HTTP {response.status_code}; "
                "a platform that takes drill seeds answers it like the reference server"
            )

    def applied_keys(self, *, org_id: str, key_prefix: str) -> dict[str, int] | None:
        """Ask the platform which keys it applied (``GET /_control/operations``, as the
        reference server answers); None when it does not say."""
        if not self.sandbox:
            return None
        try:
            response = self._send("GET", OPERATIONS_PATH, None, timeout=self.config.timeout_seconds)
            operations = _json_object(response).get("operations") if response.is_success else None
        except PlatformError:
            return None
        if not isinstance(operations, list):
            return None
        return {
            str(o["idempotency_key"]): int(o.get("replays", 0))
            for o in operations
            if isinstance(o, dict)
            and o.get("applied")
            and str(o.get("idempotency_key", "")).startswith(key_prefix)
        }

    # ---- drills and state ------------------------------------------------------------------

    def _planned_fault(
        self, org_id: str, key: str, change: Change, timeout: float
    ) -> PlatformError | None:
        """Take a drill's planned fault for this call; only ever on a sandbox platform."""
        if not self.sandbox:
            return None
        fault = take_fault(org_id, self.platform, key, change.mutation_type)
        return fault_error(fault, self.api_name, timeout) if fault is not None else None

    def _contract_snapshot(self, targets: list[dict[str, Any]]) -> list[Any]:
        response = self._send(
            "POST", SNAPSHOT_PATH, {"targets": targets}, timeout=self.config.timeout_seconds
        )
        if not response.is_success:
            raise self._refusal(response, _receipt(response))
        states = _json_object(response).get("states")
        if not isinstance(states, list) or len(states) != len(targets):
            raise FatalError(
                f"{self.api_name}: bad_snapshot: expected {len(targets)} states in "
                f'{{"states": [...]}}, got {response.text[:200]!r}'
            )
        return states

    def _requested_state(self, request: dict[str, Any]) -> Any:
        method = str(request.get("method", "GET")).upper()
        response = self._send(
            method, str(request["path"]), request.get("json"), timeout=self.config.timeout_seconds
        )
        if response.status_code == 404:
            return None  # absent: a state like any other (created, then deleted again)
        if not response.is_success:
            raise self._refusal(response, _receipt(response))
        return response.json() if response.content else None

    # ---- transport -------------------------------------------------------------------------

    def _client_once(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(
                    base_url=self.config.base_url,
                    transport=self._transport,
                    limits=httpx.Limits(max_connections=self.config.max_in_flight),
                    headers={"User-Agent": "backstop"},
                )
            return self._client

    def _send(
        self, method: str, path: str, body: Any, *, timeout: float, key: str | None = None
    ) -> httpx.Response:
        raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if key is not None:
            headers["Idempotency-Key"] = key
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        wait = min(timeout, self.config.timeout_seconds)
        with self._slots:
            if self._bucket is not None:
                self._bucket.take()
            if self._secret:
                stamp = str(int(time.time()))
                headers["X-Backstop-Timestamp"] = stamp
                headers["X-Backstop-Signature"] = sign(self._secret, stamp, raw)
            try:
                return self._client_once().request(
                    method, path, content=raw or None, headers=headers, timeout=wait
                )
            except NOT_SENT as exc:
                raise TransientError(f"{self.api_name}: unreachable ({_describe(exc)})") from exc
            except httpx.TimeoutException as exc:
                raise AmbiguousOutcome(
                    f"{self.api_name}: no answer within {wait:g}s after the request was sent; "
                    "it may have been applied"
                ) from exc
            except httpx.TransportError as exc:
                raise AmbiguousOutcome(
                    f"{self.api_name}: connection lost after the request was sent "
                    f"({_describe(exc)}); it may have been applied"
                ) from exc

    def _refusal(self, response: httpx.Response, receipt: dict[str, Any]) -> PlatformError:
        status = response.status_code
        code, message = _error_of(response)
        text = f"{self.api_name}: {code} (HTTP {status})" + (f": {message}" if message else "")
        if status == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            suffix = f", retry_after={wait:g}s" if wait is not None else ""
            return RateLimited(
                f"{self.api_name}: {code} (HTTP 429{suffix})", retry_after=wait, receipt=receipt
            )
        if status >= 500:
            return TransientError(text, receipt=receipt)
        if status == 409:
            return FatalError(
                f"{self.api_name}: idempotency key reused for a different request (HTTP 409)"
                + (f": {message}" if message else ""),
                receipt=receipt,
            )
        return FatalError(text, receipt=receipt)


def _snapshot_request(target: dict[str, Any]) -> dict[str, Any] | None:
    """Return a target's own read request: a target that is only ``{"request": {...}}``."""
    request = target.get("request") if len(target) == 1 else None
    return request if isinstance(request, dict) and "path" in request else None


def _receipt(response: httpx.Response) -> dict[str, Any]:
    receipt: dict[str, Any] = {"http_status": response.status_code}
    for header in REQUEST_ID_HEADERS:
        if header in response.headers:
            receipt["request_id"] = response.headers[header][:100]
            break
    return receipt


def _json_object(response: httpx.Response) -> dict[str, Any]:
    if not response.content:
        return {}
    try:
        body = response.json()
    except ValueError:
        return {"body": response.text[:2000]}
    return body if isinstance(body, dict) else {"body": body}


def _error_of(response: httpx.Response) -> tuple[str, str]:
    """Return the error code and message of a refusal, from ``{"error": {...}}`` if given."""
    fallback = response.reason_phrase.lower().replace(" ", "_") or "error"
    try:
        body = response.json()
    except ValueError:
        return fallback, response.text[:300]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("code") or fallback), str(error.get("message") or "")[:300]
    if isinstance(error, str):
        return fallback, error[:300]
    message = body.get("message") if isinstance(body, dict) else None
    return fallback, str(message or "")[:300]


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
