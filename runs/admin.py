from django.contrib import admin

from runs.models import ScopeLock, StepExecution, WorkflowRun


@admin.register(WorkflowRun)
class WorkflowRunAdmin(admin.ModelAdmin):
    list_display = ("run_id", "workflow_id", "status", "decision_id", "created_at", "finished_at")
    list_filter = ("status", "workflow_id", "is_drill")
    search_fields = ("run_id", "decision__id", "idempotency_key")


@admin.register(StepExecution)
class StepExecutionAdmin(admin.ModelAdmin):
    list_display = ("run_id", "name", "kind", "status", "attempts", "next_attempt_at")
    list_filter = ("kind", "status")


@admin.register(ScopeLock)
class ScopeLockAdmin(admin.ModelAdmin):
    list_display = ("key", "run_id", "acquired_at", "org")
