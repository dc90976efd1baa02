from django.apps import AppConfig


class ControlplaneConfig(AppConfig):
    name = "controlplane"
    verbose_name = "Control plane"

    def ready(self) -> None:
        from controlplane.drills.schedule import start_due_drills
        from controlplane.drills.verify import verify_finished_drills
        from controlplane.notify.chain import notify_broken_chains
        from controlplane.notify.outbox import enqueue_run_ends
        from controlplane.notify.sender import deliver_due
        from runs import periodic, records

        periodic.register("start_due_drills", start_due_drills)
        periodic.register("verify_finished_drills", verify_finished_drills)
        periodic.register("deliver_webhooks", deliver_due)
        periodic.register("notify_broken_chains", notify_broken_chains)
        if enqueue_run_ends not in records.on_runs_ended:
            records.on_runs_ended.append(enqueue_run_ends)
