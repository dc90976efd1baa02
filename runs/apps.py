from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Workflow runs"

    def ready(self) -> None:
        # Registering the built-in workflows validates their action contracts at start-up.
        from mutations import chain
        from runs import periodic
        from runs.approvals import expire_due
        from runs.workflows import builtin  # noqa: F401
        from runs.workflows.extensions import load_extensions

        load_extensions()

        periodic.register("expire_approvals", expire_due)
        periodic.register("verify_mutation_log", chain.verify_recent)
