from django.contrib import admin
from django.http import HttpRequest

from controlplane.models import (
    Decision,
    Membership,
    Organization,
    PolicyEvaluation,
    PolicyVersion,
    ServiceAccount,
    Workspace,
)

admin.site.register(Organization)
admin.site.register(Workspace)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ("user", "org", "role")
    list_filter = ("role",)


@admin.register(ServiceAccount)
class ServiceAccountAdmin(admin.ModelAdmin):
    list_display = ("name", "org", "workspace", "created_at")


@admin.register(PolicyVersion)
class PolicyVersionAdmin(admin.ModelAdmin):
    list_display = ("version", "workspace", "is_active", "activated_at", "activated_by")


@admin.register(Decision)
class DecisionAdmin(admin.ModelAdmin):
    list_display = ("id", "type", "summary", "requested_by", "received_at")
    list_filter = ("type",)
    search_fields = ("id", "summary")

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False  # decisions are immutable once received


@admin.register(PolicyEvaluation)
class PolicyEvaluationAdmin(admin.ModelAdmin):
    list_display = ("decision", "policy_version", "outcome", "evaluated_at")
    list_filter = ("outcome",)
