"""The MCP server over Streamable HTTP, mounted at /mcp/ beside Django (controlplane.asgi)."""

from __future__ import annotations

from django.conf import settings
from mcp.server.transport_security import TransportSecuritySettings

from controlplane.agents.server import build_server, http_token

PATH = "/mcp/"
# The SDK answers these too: its protected-resource metadata names where tokens come from.
PREFIXES = ("/mcp", "/.well-known/oauth-protected-resource")


def serves(path: str) -> bool:
    """Return whether a request path is the MCP server's."""
    return any(path == prefix or path.startswith(f"{prefix}/") for prefix in PREFIXES)


def _transport_security() -> TransportSecuritySettings:
    """Accept the hosts Django accepts (a browser page on another site cannot call in)."""
    hosts = settings.ALLOWED_HOSTS
    if "*" in hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    return TransportSecuritySettings(
        allowed_hosts=[pattern for host in hosts for pattern in (host, f"{host}:*")],
        allowed_origins=[settings.BACKSTOP_PUBLIC_URL],
    )


# Stateless: any web process answers any request, so the web server may run several.
mcp_application = build_server(http_token).streamable_http_app(
    streamable_http_path=PATH,
    stateless_http=True,
    json_response=True,
    transport_security=_transport_security(),
)
