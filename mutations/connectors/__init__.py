"""Platform connectors by platform name."""

from mutations.connectors.base import (
    AmbiguousOutcome,
    Applied,
    Call,
    Change,
    Connector,
    FatalError,
    PlatformError,
    PlatformTimeout,
    RateLimited,
    TransientError,
)
from mutations.connectors.http import HttpConnector
from mutations.connectors.platforms_file import HttpPlatform
from mutations.connectors.sandbox import SANDBOX_PLATFORMS, SandboxConnector

_CONNECTORS: dict[str, Connector] = {
    name: SandboxConnector(name, api_name) for name, api_name in SANDBOX_PLATFORMS.items()
}


class UnknownPlatformError(LookupError):
    pass


def get_connector(platform: str) -> Connector:
    """Return the connector for a platform name, or raise naming the known ones."""
    try:
        return _CONNECTORS[platform]
    except KeyError:
        known = ", ".join(sorted(_CONNECTORS))
        raise UnknownPlatformError(
            f"No connector for platform {platform!r}; known: {known}."
        ) from None


def in_database(platform: str) -> bool:
    """True when the platform keeps its state in Backstop's database (the built-in
    sandbox): its calls and reads run on the caller's own connection, not in flight."""
    return bool(getattr(get_connector(platform), "in_database", False))


def known_platforms() -> list[str]:
    return sorted(_CONNECTORS)


def register_connector(connector: Connector) -> None:
    """Add (or replace) the connector of a platform."""
    _CONNECTORS[connector.platform] = connector


def unregister_connector(platform: str) -> None:
    _CONNECTORS.pop(platform, None)


__all__ = [
    "AmbiguousOutcome",
    "Applied",
    "Call",
    "Change",
    "Connector",
    "FatalError",
    "HttpConnector",
    "HttpPlatform",
    "PlatformError",
    "PlatformTimeout",
    "RateLimited",
    "TransientError",
    "UnknownPlatformError",
    "get_connector",
    "known_platforms",
    "register_connector",
    "unregister_connector",
]
