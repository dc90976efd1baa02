from rest_framework import serializers

from runs.models import WorkflowRun


class WorkflowRunSerializer(serializers.ModelSerializer[WorkflowRun]):
    """The seed's run shape first, then what else a run knows."""

    org_id = serializers.CharField()
    decision_id = serializers.CharField()

    class Meta:
        model = WorkflowRun
        fields = (
            "run_id",
            "workflow_id",
            "status",
            "idempotency_key",
            "current_step_id",
            "requested_by",
            "org_id",
            "retry_count",
            "awaiting_approval",
            "created_at",
            "updated_at",
            "decision_id",
            "workflow_version",
            "trace_id",
            "is_drill",
            "failed_step_id",
            "before_state_hash",
            "after_state_hash",
            "finished_at",
            "engine",
        )
