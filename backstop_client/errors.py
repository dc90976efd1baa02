"""The API's refusals as exceptions: one class per status an agent reacts to differently.

Every refusal of the API has one shape, ``{"error": {"code", "message", "fields"}}``;
``error_for`` turns a response carrying it (or any other non-2xx answer) into the
matching exception.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx


class BackstopError(Exception):
    """A request the API refused or failed: its HTTP status, the error code and message the
    API gave, and what is wrong with each field, by its path (``{"action.amount": [...]}``).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: str = "error",
        fields: dict[str, list[str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.fields: dict[str, list[str]] = fields or {}

    def __str__(self) -> str:
        text = f"{self.status} {self.code}: {self.message}"
        problems = "; ".join(
            f"{path}: {' '.join(messages)}" for path, messages in self.fields.items()
        )
        return f"{text} ({problems})" if problems and problems not in self.message else text


class Invalid(BackstopError):
    """400: the request is malformed; ``fields`` says what is wrong with each field."""


class Unauthorized(BackstopError):
    """401: the token is missing, malformed, unknown or revoked."""


class Forbidden(BackstopError):
    """403: the token may not do this; the message names the role that may."""


class NotFound(BackstopError):
    """404: no such object in the token's organization."""


class Conflict(BackstopError):
    """409: conflicts with what is stored, e.g. a decision id sent again with another payload."""


class RateLimited(BackstopError):
    """429: the token made too many requests; try again after ``retry_after`` seconds
    (None when the API did not say)."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 429,
        code: str = "throttled",
        fields: dict[str, list[str]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, fields=fields)
        self.retry_after = retry_after


BY_STATUS: dict[int, type[BackstopError]] = {
    400: Invalid,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
}


def error_for(response: httpx.Response) -> BackstopError:
    """Return the exception a refused (non-2xx) response amounts to."""
    code, message, fields = _error_body(response)
    if response.status_code == 429:
        return RateLimited(
            message,
            code=code,
            fields=fields,
            retry_after=retry_after(response.headers.get("Retry-After")),
        )
    kind = BY_STATUS.get(response.status_code, BackstopError)
    return kind(message, status=response.status_code, code=code, fields=fields)


def _error_body(response: httpx.Response) -> tuple[str, str, dict[str, list[str]]]:
    """Return the code, message and fields of the API's error shape; for another body (a
    proxy's page, a server error) the status's reason and the start of the text."""
    try:
        error: Any = response.json()["error"]
        code, message, fields = error["code"], error["message"], error.get("fields") or {}
    except (ValueError, KeyError, TypeError):
        reason = response.reason_phrase or "HTTP error"
        text = response.text.strip()[:200]
        return "error", f"{reason}: {text}" if text else reason, {}
    return str(code), str(message), {str(k): [str(m) for m in v] for k, v in fields.items()}


def retry_after(value: str | None) -> float | None:
    """Return the seconds a Retry-After header asks to wait (delta-seconds or an HTTP date),
    or None when it is absent or unreadable."""
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
