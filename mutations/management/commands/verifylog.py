import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from mutations import chain
from mutations.models import LogHead


class Command(BaseCommand):
    help = (
        "Recompute the Mutation Log's hash chain of every organization (or one) and name the "
        "first broken entry; export a signed checkpoint, or verify against one kept elsewhere."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", help="An organization id (org_...); default: all of them.")
        parser.add_argument(
            "--checkpoint-out", type=Path, help="Write a signed checkpoint of --org here."
        )
        parser.add_argument(
            "--checkpoint", type=Path, help="Verify against a checkpoint written earlier."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["checkpoint"]:
                checkpoint = json.loads(Path(options["checkpoint"]).read_text())
                self._report(chain.verify_checkpoint(checkpoint), checkpoint=checkpoint)
                return
            orgs = (
                [options["org"]]
                if options["org"]
                else list(LogHead.objects.values_list("org_id", flat=True))
            )
            broken = 0
            for org_id in orgs:
                result = chain.verify(org_id)
                chain.record_verification(result)
                broken += not self._report(result)
            if options["checkpoint_out"]:
                if not options["org"]:
                    raise CommandError("--checkpoint-out needs --org.")
                point = chain.make_checkpoint(options["org"])
                Path(options["checkpoint_out"]).write_text(json.dumps(point, indent=2))
                target = options["checkpoint_out"]
                self.stdout.write(f"checkpoint at entry {point['sequence']} written to {target}")
        except (OSError, ValueError, KeyError) as error:
            raise CommandError(str(error)) from None
        if broken:
            raise CommandError(f"{broken} organization(s) have a broken Mutation Log.")

    def _report(self, result: chain.Verification, checkpoint: dict[str, Any] | None = None) -> bool:
        if result.ok:
            against = (
                f" and matches the checkpoint at entry {checkpoint['sequence']}"
                if checkpoint
                else ""
            )
            self.stdout.write(
                f"{result.org_id}: {result.checked} entries, the chain verifies{against}"
            )
            return True
        message = (
            f"{result.org_id}: BROKEN at entry {result.broken_at}"
            f"{f' ({result.mutation_id})' if result.mutation_id else ''}: {result.reason}"
        )
        if checkpoint is not None:
            raise CommandError(message)
        self.stderr.write(message)
        return False
