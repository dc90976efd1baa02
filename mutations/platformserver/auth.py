"""The contract's optional request authentication: a bearer token and an HMAC signature."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

from mutations.platformserver.store import Refused

TIMESTAMP_TOLERANCE_SECONDS = 300


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Return the ``X-Backstop-Signature`` value for a body sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "v1=" + digest.hexdigest()


@dataclass(frozen=True)
class Verdict:
    """What the request log records about a request's credentials, and the refusal if any."""

    authorized: bool
    signature_valid: bool | None  # None: the platform has no signing secret
    refusal: Refused | None


def check(
    headers: Mapping[str, str], body: bytes, *, token: str, secret: str, now: float | None = None
) -> Verdict:
    """Check the token and then the signature, each when configured.

    ``headers`` has lower-case names.
    """
    authorized = not token or hmac.compare_digest(
        headers.get("authorization", "").encode(), f"Bearer {token}".encode()
    )
    refusal = (
        None if authorized else Refused(401, "unauthorized", "a valid bearer token is required")
    )
    signature_valid: bool | None = None
    if secret:
        problem = _signature_problem(headers, body, secret, time.time() if now is None else now)
        signature_valid = problem is None
        refusal = refusal or problem
    return Verdict(authorized, signature_valid, refusal)


def _signature_problem(
    headers: Mapping[str, str], body: bytes, secret: str, now: float
) -> Refused | None:
    stamp = headers.get("x-backstop-timestamp", "")
    given = headers.get("x-backstop-signature", "")
    if not stamp or not given:
        return Refused(
            401, "bad_signature", "X-Backstop-Timestamp and X-Backstop-Signature are required"
        )
    if not hmac.compare_digest(given.encode(), sign(secret, stamp, body).encode()):
        return Refused(401, "bad_signature", "the signature does not match the body")
    try:
        skew = abs(now - int(stamp))
    except ValueError:
        return Refused(401, "bad_signature", "X-Backstop-Timestamp must be unix seconds")
    if skew > TIMESTAMP_TOLERANCE_SECONDS:
        return Refused(
            401,
            "stale_timestamp",
            f"the timestamp is {skew:.0f}s from now; at most {TIMESTAMP_TOLERANCE_SECONDS}s",
        )
    return None
