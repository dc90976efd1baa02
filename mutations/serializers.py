"""The published shapes of Mutation Log entries and runtime events."""

from typing import Any

from rest_framework import serializers

from mutations.models import Mutation, RuntimeEvent


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


UTC_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def mutation_entry(mutation: Mutation) -> dict[str, Any]:
    """Return one Mutation Log entry in the published shape (fast: no serializer machinery)."""
    return {
        "mutation_id": mutation.mutation_id,
        "decision_id": mutation.decision_id,
        "platform": mutation.platform,
        "mutation_type": mutation.mutation_type,
        "payload": mutation.payload,
        "result": mutation.result,
        "status": mutation.status,
        "actor_type": mutation.actor_type,
        "created_at": mutation.created_at.strftime(UTC_FORMAT),
        "error_message": mutation.error_message,
    }


def query_result(query: dict[str, Any], entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Return the Mutation Log's query shape: the query, its entries and their count."""
    return {"query": query, "entries": entries, "count": len(entries)}
