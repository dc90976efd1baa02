from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from mutations.platformserver import PlatformConfig, serve_platforms, serve_until_signalled
from mutations.platformserver.cli import (
    OptionsError,
    add_arguments,
    configs_from_ports,
    latency_from,
)

LOCAL_HOSTS = ("127.0.0.1", "localhost")


class Command(BaseCommand):
    help = (
        "Serve reference HTTP platforms speaking Backstop's platform contract, until SIGTERM "
        "or Ctrl-C: one per --port, or, with no --port, every platform of "
        "BACKSTOP_PLATFORMS_FILE whose base_url is on this machine."
    )
    requires_system_checks = ()  # serves no model: start without them

    def add_arguments(self, parser: CommandParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            latency = latency_from(options)
            configs = configs_from_ports(options) if options["port"] else self._from_file(latency)
        except OptionsError as error:
            raise CommandError(str(error)) from None
        try:
            servers = serve_platforms(configs)
        except OSError as error:
            raise CommandError(f"cannot listen: {error}") from None
        for server in servers:
            self.stdout.write(f"serving {server.config.name} on {server.url}")
        self.stdout.flush()
        serve_until_signalled(servers)

    def _from_file(self, latency_seconds: float) -> list[PlatformConfig]:
        """Return the platforms file's local platforms, each with the secrets it names."""
        path = settings.BACKSTOP_PLATFORMS_FILE
        if not path:
            raise CommandError(
                "Give --port, or set BACKSTOP_PLATFORMS_FILE to serve that file's platforms."
            )
        # Imported here: the platforms file is optional and this command serves --port alone.
        # Loading it also checks that every secret variable it names is set.
        from mutations.connectors.platforms_file import load_platforms_file

        try:
            platforms = load_platforms_file(Path(path))
        except ValueError as error:
            raise CommandError(str(error)) from None
        configs = []
        for platform in platforms:
            url = urlsplit(platform.base_url)
            if url.scheme != "http" or url.hostname not in LOCAL_HOSTS:
                continue  # not this machine's to serve (and TLS is out of scope)
            configs.append(
                PlatformConfig(
                    name=platform.name,
                    host=url.hostname or "127.0.0.1",
                    port=url.port or 80,
                    token=platform.bearer_token(),
                    signing_secret=platform.signing_secret(),
                    latency_seconds=latency_seconds,
                )
            )
        if not configs:
            raise CommandError(f"{path} has no platform on 127.0.0.1 or localhost to serve.")
        return configs
