"""Command-line options shared by ``manage.py platformserver`` and ``python -m
mutations.platformserver``: serve one or more ports with the same name and secrets."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import Any

from mutations.platformserver.server import PlatformConfig, serve_platforms, serve_until_signalled

MAX_LATENCY_MS = 60_000


class OptionsError(ValueError):
    """Options that cannot be served; the message says what to change."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        type=int,
        action="append",
        default=[],
        help="Serve a platform on this port (repeatable; 0 picks a free one).",
    )
    parser.add_argument("--name", help='The platform\'s name (default "platform-<port>").')
    parser.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
    parser.add_argument(
        "--token-env", help="Environment variable holding the bearer token to require."
    )
    parser.add_argument(
        "--signing-secret-env",
        help="Environment variable holding the HMAC secret request signatures must use.",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="Wait this long before answering each /v1 call, as a distant platform would "
        "(concurrent calls wait concurrently; /_control is answered at once).",
    )


def secret_from(variable: str | None, environ: Mapping[str, str] = os.environ) -> str:
    """Return the secret an environment variable holds ("" when none is named)."""
    if not variable:
        return ""
    value = environ.get(variable, "")
    if not value:
        raise OptionsError(f"environment variable {variable} is not set; export the secret in it")
    return value


def latency_from(options: Mapping[str, Any]) -> float:
    """Return ``--latency-ms`` in seconds."""
    milliseconds = float(options.get("latency_ms") or 0.0)
    if not 0 <= milliseconds <= MAX_LATENCY_MS:  # NaN fails too
        raise OptionsError(f"--latency-ms {milliseconds:g} is not between 0 and {MAX_LATENCY_MS}")
    return milliseconds / 1000


def configs_from_ports(
    options: Mapping[str, Any], environ: Mapping[str, str] = os.environ
) -> list[PlatformConfig]:
    """Return one platform per ``--port``, each with the same name, host, secrets and
    latency."""
    token = secret_from(options.get("token_env"), environ)
    secret = secret_from(options.get("signing_secret_env"), environ)
    latency = latency_from(options)
    for port in options["port"]:
        if not 0 <= port <= 65535:
            raise OptionsError(f"--port {port} is not a TCP port (0-65535)")
    return [
        PlatformConfig(
            name=options.get("name") or f"platform-{port}",
            port=port,
            host=options.get("host") or "127.0.0.1",
            token=token,
            signing_secret=secret,
            latency_seconds=latency,
        )
        for port in options["port"]
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the platforms the options name until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m mutations.platformserver")
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    if not options["port"]:
        parser.error("give at least one --port")
    try:
        servers = serve_platforms(configs_from_ports(options))
    except (OptionsError, OSError) as error:
        parser.exit(2, f"platformserver: {error}\n")
    for server in servers:
        print(f"serving {server.config.name} on {server.url}", flush=True)
    serve_until_signalled(servers)
    return 0
