from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from controlplane.models import Workspace
from controlplane.policy.rules import PolicyInvalid, parse_policy
from controlplane.policy.versions import activate_policy


class Command(BaseCommand):
    help = "Validate a policy file, or activate it for a workspace."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        validate = actions.add_parser("validate", help="Check a policy file; change nothing.")
        validate.add_argument("file", type=Path)
        activate = actions.add_parser("activate", help="Make a policy file the active version.")
        activate.add_argument("file", type=Path)
        activate.add_argument("--org", default="demo", help="Organization slug (default: demo).")
        activate.add_argument("--workspace", default="default", help="Workspace slug.")
        activate.add_argument("--by", default="cli", help="Who activates it, for the history.")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            text = path.read_text()
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror}.") from None
        try:
            if options["action"] == "validate":
                policy = parse_policy(text)
                self.stdout.write(
                    f"{path}: valid policy {policy.version} with {len(policy.rules)} rule(s), "
                    f"default {policy.default}"
                )
                return
            workspace = Workspace.objects.filter(
                org__slug=options["org"], slug=options["workspace"]
            ).first()
            if workspace is None:
                raise CommandError(
                    f"No workspace {options['workspace']!r} in org {options['org']!r}."
                )
            version = activate_policy(workspace=workspace, text=text, activated_by=options["by"])
        except PolicyInvalid as invalid:
            problems = "\n".join(f"  {path}: {problem}" for problem in invalid.problems)
            raise CommandError(f"{path} is not a valid policy:\n{problems}") from None
        self.stdout.write(f"{version.version} is the active policy of {workspace}")
