from django.apps import AppConfig


class ControlplaneConfig(AppConfig):
    name = "controlplane"
    verbose_name = "Control plane"

    def ready(self) -> None:
        from controlplane.drills.schedule import start_due_drills
        from controlplane.drills.verify import verify_finished_drills
        from runs import periodic

        periodic.register("start_due_drills", start_due_drills)
        periodic.register("verify_finished_drills", verify_finished_drills)
