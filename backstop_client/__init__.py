"""Backstop's Python client for agents: propose decisions, wait for their runs, read what
changed and what was undone. Depends on httpx only.

    from backstop_client import Client

    with Client("http://127.0.0.1:8000", token) as backstop:
        decision = backstop.wait(backstop.propose(document).id, timeout=60)
        print(decision.status, decision.net_change)
"""

from backstop_client.client import VERSION as __version__
from backstop_client.client import AsyncClient, Client
from backstop_client.errors import (
    BackstopError,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    RateLimited,
    Unauthorized,
)
from backstop_client.models import (
    TERMINAL_STATUSES,
    Action,
    Decision,
    Mutation,
    PolicyOutcome,
    PolicyPreview,
    Run,
)

__all__ = [
    "TERMINAL_STATUSES",
    "Action",
    "AsyncClient",
    "BackstopError",
    "Client",
    "Conflict",
    "Decision",
    "Forbidden",
    "Invalid",
    "Mutation",
    "NotFound",
    "PolicyOutcome",
    "PolicyPreview",
    "RateLimited",
    "Run",
    "Unauthorized",
    "__version__",
]
