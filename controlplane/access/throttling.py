"""The agents' rate limit: each API token may make BACKSTOP_AGENT_RATE requests."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from controlplane.models import ApiToken


class AgentRateThrottle(SimpleRateThrottle):
    """Limit each API token (people's sessions are not limited): BACKSTOP_AGENT_RATE."""

    scope = "agent"

    def get_rate(self) -> str:
        return str(settings.BACKSTOP_AGENT_RATE)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if isinstance(request.auth, ApiToken):
            return f"throttle_agent_{request.auth.lookup}"
        return None
