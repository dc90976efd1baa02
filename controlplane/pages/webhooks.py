"""The admins' page of outbound notifications: webhook endpoints, their deliveries."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from controlplane.access.tenancy import ADMINS, actor_of, current_membership, require
from controlplane.models import Delivery, Organization, WebhookEndpoint
from controlplane.notify.models import EVENT_KINDS
from controlplane.notify.services import EndpointInvalid, create_endpoint, redeliver, set_enabled

RECENT_DELIVERIES = 50


def _admin_org(request: HttpRequest, *, to: str) -> Organization:
    return require(current_membership(request), ADMINS, to=to).org


@require_http_methods(["GET", "POST"])
@login_required
def webhooks(request: HttpRequest) -> HttpResponse:
    org = _admin_org(request, to="see or change webhook endpoints")
    created = None
    status = 200
    if request.method == "POST" and request.POST.get("action") == "create":
        try:
            created = create_endpoint(
                org=org,
                url=request.POST.get("url", "").strip(),
                kinds=request.POST.getlist("kinds"),
                description=request.POST.get("description", "").strip()[:200],
                format=request.POST.get("format", WebhookEndpoint.Format.JSON),
                created_by=actor_of(request.user),
            )
        except EndpointInvalid as invalid:
            messages.error(request, str(invalid))
            status = 400
    elif request.method == "POST":
        endpoint = get_object_or_404(WebhookEndpoint, pk=request.POST.get("endpoint"), org=org)
        enable = request.POST.get("action") == "enable"
        set_enabled(endpoint, enabled=enable)
        messages.success(request, f"{endpoint} {'enabled' if enable else 'disabled'}.")
        return redirect("webhooks")
    context = {
        "org": org,
        "endpoints": WebhookEndpoint.objects.filter(org=org).order_by("-created_at"),
        "kinds": EVENT_KINDS,
        "formats": WebhookEndpoint.Format.choices,
        "created": created,
    }
    return render(request, "controlplane/webhooks.html", context, status=status)


@require_http_methods(["GET"])
@login_required
def endpoint(request: HttpRequest, endpoint_id: str) -> HttpResponse:
    org = _admin_org(request, to="see webhook deliveries")
    found = get_object_or_404(WebhookEndpoint, pk=endpoint_id, org=org)
    context = {
        "org": org,
        "endpoint": found,
        "deliveries": found.deliveries.order_by("-created_at")[:RECENT_DELIVERIES],
    }
    return render(request, "controlplane/webhooks_endpoint.html", context)


@require_POST
@login_required
def redeliver_delivery(request: HttpRequest, delivery_id: str) -> HttpResponse:
    org = _admin_org(request, to="redeliver webhooks")
    delivery = redeliver(get_object_or_404(Delivery, pk=delivery_id, org=org))
    messages.success(request, f"{delivery.id} will be sent again with the same delivery id.")
    return redirect("webhook", endpoint_id=delivery.endpoint_id)
