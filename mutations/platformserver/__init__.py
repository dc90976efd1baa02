"""Backstop's reference HTTP platform: the platform contract served by a real process, for
demos, tests and drills. Standard library only; it never imports Django."""

from mutations.platformserver.auth import sign
from mutations.platformserver.platform import Platform
from mutations.platformserver.server import (
    PlatformConfig,
    PlatformServer,
    serve_platforms,
    serve_until_signalled,
)

__all__ = [
    "Platform",
    "PlatformConfig",
    "PlatformServer",
    "serve_platforms",
    "serve_until_signalled",
    "sign",
]
