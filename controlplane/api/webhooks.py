"""The API of outbound notifications: webhook endpoints, their deliveries, redelivery.
Admins only; an endpoint's secret is in the answer that creates it, and nowhere else."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from controlplane.access.tenancy import ADMINS, actor_of, current_membership, require
from controlplane.api.schema import document
from controlplane.api.shapes import Moment
from controlplane.models import Delivery, Organization, WebhookEndpoint
from controlplane.notify.models import EVENT_KINDS
from controlplane.notify.services import EndpointInvalid, create_endpoint, redeliver

LIST_LIMIT = 100


class EndpointIn(serializers.Serializer[dict[str, Any]]):
    url = serializers.URLField(max_length=2000)
    kinds = serializers.ListField(
        child=serializers.ChoiceField(choices=EVENT_KINDS), allow_empty=False
    )
    description = serializers.CharField(max_length=200, required=False, default="")
    format = serializers.ChoiceField(
        choices=WebhookEndpoint.Format.choices, default=WebhookEndpoint.Format.JSON
    )


class EndpointOut(serializers.Serializer[WebhookEndpoint]):
    id = serializers.CharField()
    url = serializers.CharField()
    description = serializers.CharField()
    kinds = serializers.ListField(child=serializers.CharField())
    format = serializers.CharField()
    enabled = serializers.BooleanField()
    created_by = serializers.CharField()
    created_at = Moment()


class EndpointCreated(EndpointOut):
    secret = serializers.CharField(help_text="Signs every delivery; shown this once.")


class EndpointList(serializers.Serializer[dict[str, Any]]):
    entries = EndpointOut(many=True)


class DeliveryOut(serializers.Serializer[Delivery]):
    id = serializers.CharField()
    endpoint_id = serializers.CharField()
    kind = serializers.CharField()
    status = serializers.CharField()
    attempts = serializers.IntegerField()
    next_attempt_at = Moment()
    last_response_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField()
    created_at = Moment()
    delivered_at = Moment(allow_null=True)
    payload = serializers.JSONField()


class DeliveryList(serializers.Serializer[dict[str, Any]]):
    entries = DeliveryOut(many=True)


def _admin_org(request: Request, *, to: str) -> Organization:
    return require(current_membership(request), ADMINS, to=to).org


@document(methods=["GET"], operation_id="webhooks_list", responses={200: EndpointList})
@document(methods=["POST"], request=EndpointIn, responses={201: EndpointCreated})
@api_view(["GET", "POST"])
def webhooks(request: Request) -> Response:
    """GET: the organization's webhook endpoints. POST: subscribe a URL to event kinds;
    the answer holds the endpoint's signing secret, shown this once."""
    org = _admin_org(request, to="see or add webhook endpoints")
    if request.method == "GET":
        endpoints = WebhookEndpoint.objects.filter(org=org).order_by("-created_at")
        return Response(EndpointList({"entries": endpoints[:LIST_LIMIT]}).data)
    body = EndpointIn(data=request.data)
    body.is_valid(raise_exception=True)
    try:
        endpoint = create_endpoint(
            org=org, created_by=actor_of(request.user), **body.validated_data
        )
    except EndpointInvalid as invalid:
        raise serializers.ValidationError({"url": [str(invalid)]}) from None
    return Response(EndpointCreated(endpoint).data, status=status.HTTP_201_CREATED)


@document(responses={200: DeliveryList})
@api_view(["GET"])
def deliveries(request: Request, endpoint_id: str) -> Response:
    """The endpoint's newest deliveries, with their status, attempts and last answer."""
    org = _admin_org(request, to="see webhook deliveries")
    endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id, org=org)
    recent = endpoint.deliveries.order_by("-created_at")[:LIST_LIMIT]
    return Response(DeliveryList({"entries": recent}).data)


@document(request=None, responses={200: DeliveryOut})
@api_view(["POST"])
def redeliver_delivery(request: Request, delivery_id: str) -> Response:
    """Send a delivery again, with the same delivery id."""
    org = _admin_org(request, to="redeliver webhooks")
    delivery = redeliver(get_object_or_404(Delivery, pk=delivery_id, org=org))
    return Response(DeliveryOut(delivery).data)
