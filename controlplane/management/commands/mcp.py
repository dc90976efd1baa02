import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from controlplane.access.tokens import TokenRefused, principal_for
from controlplane.agents.server import build_server


class Command(BaseCommand):
    help = (
        "Serve Backstop's MCP tools over stdio, as the agent whose token is in BACKSTOP_TOKEN "
        "(for desktop assistants and local agent runtimes)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        token = os.environ.get("BACKSTOP_TOKEN", "")
        if not token:
            raise CommandError(
                "Set BACKSTOP_TOKEN to an agent token (bst_...): an admin creates one on the "
                "Tokens page or with the API."
            )
        try:
            principal_for(token)
        except TokenRefused as refused:
            raise CommandError(f"BACKSTOP_TOKEN: {refused}") from None
        build_server(lambda: token).run("stdio")
