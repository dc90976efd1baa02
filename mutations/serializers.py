"""The published shapes of Mutation Log entries and runtime events."""

from rest_framework import serializers

from mutations.models import RuntimeEvent


class RuntimeEventSerializer(serializers.ModelSerializer[RuntimeEvent]):
    org_id = serializers.CharField()
    workspace_id = serializers.CharField(allow_null=True)
    user_id = serializers.IntegerField(allow_null=True)
    decision_id = serializers.CharField(allow_null=True)

    class Meta:
        model = RuntimeEvent
        fields = (
            "event_id",
            "org_id",
            "workspace_id",
            "user_id",
            "decision_id",
            "trace_id",
            "surface",
            "timestamp",
            "policy_ids",
            "before_state_hash",
            "after_state_hash",
            "delta_summary",
            "payload",
            "kind",
        )
