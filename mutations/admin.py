from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from mutations.models import Mutation, RuntimeEvent, SandboxCampaign, SandboxFault, SandboxOperation


class EvidenceAdmin(admin.ModelAdmin):
    """Evidence can be read here, never written."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Mutation)
class MutationAdmin(EvidenceAdmin):
    list_display = ("mutation_id", "decision_id", "platform", "status", "actor_type", "created_at")
    list_filter = ("status", "platform")
    search_fields = ("mutation_id", "decision__id", "idempotency_key")


@admin.register(RuntimeEvent)
class RuntimeEventAdmin(EvidenceAdmin):
    list_display = ("event_id", "kind", "decision_id", "surface", "timestamp")
    list_filter = ("kind", "surface")
    search_fields = ("event_id", "decision__id", "trace_id")


@admin.register(SandboxCampaign)
class SandboxCampaignAdmin(admin.ModelAdmin):
    list_display = ("platform", "campaign_id", "market", "daily_budget_micros", "status", "org")


@admin.register(SandboxFault)
class SandboxFaultAdmin(admin.ModelAdmin):
    list_display = ("platform", "kind", "mutation_type", "key_prefix", "remaining", "org")


@admin.register(SandboxOperation)
class SandboxOperationAdmin(EvidenceAdmin):
    list_display = ("platform", "idempotency_key", "applied_at", "org")
