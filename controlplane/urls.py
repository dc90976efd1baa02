from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from controlplane import pages as views
from controlplane.api import actions as api_actions
from controlplane.api import decisions as api
from controlplane.api import resources as api_resources
from controlplane.api import webhooks as api_webhooks
from controlplane.metrics.views import metrics
from controlplane.pages import webhooks as webhook_pages
from controlplane.pages.decisions import redrive as redrive_page

api_v1 = [
    path("decisions/", api.decisions, name="api-decisions"),
    path("decisions/<str:decision_id>/", api.decision_detail, name="api-decision"),
    path("decisions/<str:decision_id>/redrive/", api.decision_redrive, name="api-decision-redrive"),
    path("mutations/", api.mutations, name="api-mutations"),
    path("events/", api.events, name="api-events"),
    path("runs/<str:run_id>/", api.run_detail, name="api-run"),
    path("runs/<str:run_id>/evidence/", api.run_evidence, name="api-run-evidence"),
    path("runs/<str:run_id>/rollback/", api.run_rollback, name="api-run-rollback"),
    path("runs/<str:run_id>/approve/", api.run_approve, name="api-run-approve"),
    path("approvals/", api_resources.approvals, name="api-approvals"),
    path("drills/", api_resources.drills, name="api-drills"),
    path("drills/<str:drill_id>/", api_resources.drill_detail, name="api-drill"),
    path("policies/", api_resources.policies, name="api-policies"),
    path("actions/", api_actions.actions, name="api-actions"),
    path("runs/<str:run_id>/reject/", api.run_reject, name="api-run-reject"),
    path("webhooks/", api_webhooks.webhooks, name="api-webhooks"),
    path(
        "webhooks/<str:endpoint_id>/deliveries/",
        api_webhooks.deliveries,
        name="api-webhook-deliveries",
    ),
    path(
        "deliveries/<str:delivery_id>/redeliver/",
        api_webhooks.redeliver_delivery,
        name="api-delivery-redeliver",
    ),
]

urlpatterns = [
    path("", views.overview, name="overview"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("decisions/", views.decision_list, name="decisions"),
    path("decisions/<str:decision_id>/", views.decision_detail, name="decision"),
    path("decisions/<str:decision_id>/redrive/", redrive_page, name="decision-redrive"),
    path("runs/<str:run_id>/", views.run_detail, name="run"),
    path("runs/<str:run_id>/rollback/", views.run_rollback, name="run-rollback"),
    path("runs/<str:run_id>/evidence.json", views.run_evidence_download, name="run-evidence"),
    path("approvals/", views.approvals, name="approvals"),
    path("runs/<str:run_id>/approve/", views.decide, {"verdict": "approve"}, name="run-approve"),
    path("runs/<str:run_id>/reject/", views.decide, {"verdict": "reject"}, name="run-reject"),
    path("drills/", views.drills, name="drills"),
    path("drills/start/", views.start, name="drill-start"),
    path("drills/all/", views.start_all, name="drill-all"),
    path("drills/schedule/", views.schedule, name="drill-schedule"),
    path("drills/<str:drill_id>/", views.drill_detail, name="drill"),
    path("policies/", views.policies, name="policies"),
    path("workflows/", views.workflows, name="workflows"),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/<int:token_id>/revoke/", views.revoke, name="token-revoke"),
    path("settings/webhooks/", webhook_pages.webhooks, name="webhooks"),
    path("settings/webhooks/<str:endpoint_id>/", webhook_pages.endpoint, name="webhook"),
    path(
        "settings/webhooks/deliveries/<str:delivery_id>/redeliver/",
        webhook_pages.redeliver_delivery,
        name="webhook-redeliver",
    ),
    path("org/", views.switch_org, name="switch-org"),
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="metrics"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]

handler403 = "controlplane.pages.errors.forbidden"
handler404 = "controlplane.pages.errors.not_found"
handler500 = "controlplane.pages.errors.server_error"
