import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from controlplane.api.errors import flatten
from controlplane.exceptions import DecisionConflict
from controlplane.intake.serializers import DecisionInSerializer
from controlplane.intake.submit import submit_decision
from controlplane.models import Organization, ServiceAccount
from mutations.services import Surface


class Command(BaseCommand):
    help = "Submit a decision from a JSON file as an agent (service account)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path, help="The decision as JSON.")
        parser.add_argument("--org", default="demo", help="Organization slug (default: demo).")
        parser.add_argument(
            "--agent",
            default="decision-runtime-cron",
            help="Service account that submits it (default: decision-runtime-cron).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        try:
            document = json.loads(path.read_text())
        except OSError as error:
            raise CommandError(f"Cannot read {path}: {error.strerror}.") from None
        except json.JSONDecodeError as error:
            raise CommandError(f"{path} is not JSON: line {error.lineno}: {error.msg}.") from None
        try:
            org = Organization.objects.get(slug=options["org"])
            agent = ServiceAccount.objects.select_related("workspace").get(
                org=org, name=options["agent"]
            )
        except (Organization.DoesNotExist, ServiceAccount.DoesNotExist):
            raise CommandError(
                f"No service account {options['agent']!r} in org {options['org']!r}; "
                "run `python manage.py demo` or pass --org/--agent."
            ) from None
        serializer = DecisionInSerializer(data=document)
        if not serializer.is_valid():
            problems = "\n".join(
                f"  {field}: {' '.join(msgs)}" for field, msgs in flatten(serializer.errors).items()
            )
            raise CommandError(f"{path} is not a valid decision:\n{problems}")
        try:
            submission = submit_decision(
                workspace=agent.workspace,
                document={k: document[k] for k in serializer.validated_data},
                requested_by=agent.actor,
                surface=Surface.CLI,
            )
        except DecisionConflict as conflict:
            raise CommandError(str(conflict)) from None
        decision = submission.decision
        run = decision.runs.order_by("-created_at").first()
        outcome = decision.evaluation.outcome
        state = "received" if submission.created else "already received"
        self.stdout.write(
            f"{decision.id} {state}; policy: {outcome}; run: "
            f"{run.run_id + ' ' + run.status if run else 'none'}"
        )
