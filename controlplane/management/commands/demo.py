from typing import Any

from django.core.management.base import BaseCommand

from controlplane.devtools.demo import DEMO_USERS, demo_password, load_demo


class Command(BaseCommand):
    help = "Create the demo organization, users, policy, sandbox campaigns and decisions."

    def handle(self, *args: Any, **options: Any) -> None:
        demo = load_demo()
        for submission in demo.submissions:
            decision = submission.decision
            state = "submitted" if submission.created else "already there"
            self.stdout.write(f"{decision.id} {state}: {decision.summary}")
        users = ", ".join(DEMO_USERS)
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo ready in org {demo.org.name!r}. Users: {users}; password: {demo_password()}"
            )
        )
