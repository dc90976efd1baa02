"""The ASGI application: the dashboard and the API (Django), and the MCP server's
Streamable HTTP endpoint at /mcp/, on one host and port."""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
django_application = get_asgi_application()

from controlplane.agents.http import mcp_application, serves  # noqa: E402


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan" or (scope["type"] == "http" and serves(scope["path"])):
        await mcp_application(scope, receive, send)
    else:
        await django_application(scope, receive, send)
