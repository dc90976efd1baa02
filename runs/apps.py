from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Workflow runs"

    def ready(self) -> None:
        # Registering the built-in workflows validates their action contracts at start-up.
        from runs.workflows import builtin  # noqa: F401
